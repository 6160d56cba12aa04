import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import qextract  # noqa: E402,F401  (selects legacy Keras before anything imports TensorFlow)

warnings.filterwarnings("ignore", category=qextract.QExtractWarning)
