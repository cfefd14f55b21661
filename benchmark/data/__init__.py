"""Data: the images of a folder, listed, decoded and cached (:mod:`.images`), and the folds (:mod:`.splits`)."""
