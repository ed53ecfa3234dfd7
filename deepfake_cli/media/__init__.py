"""Reading and writing images, videos (with audio) and alignments files."""
