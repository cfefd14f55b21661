"""Store: the run folder (:mod:`.runfolder`, every path it holds and how each file is read back) and atomic
file writes (:mod:`.files`). Every stage reads and writes through it; it imports no other stage."""
