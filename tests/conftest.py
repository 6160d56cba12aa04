import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import qextract

warnings.filterwarnings("ignore", category=qextract.QExtractWarning)
