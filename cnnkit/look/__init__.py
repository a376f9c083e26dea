"""Looking at results: classification metrics (`metrics.py`) and the plots (`plots.py`)."""
