"""The pipeline of bench/index_scale.py's projects: three raw variables and one derived one.

Each project gets a copy of this file as `pipeline.py` in its folder, the way a scientist's
pipeline module sits in the project: `scistack status` can then import `peak` and compare
its code, and every process (build, measurements, CLI) sees one function identity.
"""

import numpy as np

from scistack import BaseVariable, lineage_fcn


class Force(BaseVariable):  # a float per trial
    pass


class EMG(BaseVariable):  # a 4-element float64 array per trial
    pass


class Rating(BaseVariable):  # an int per trial
    pass


class PeakEMG(BaseVariable):  # peak(EMG, gain), made by for_each
    pass


@lineage_fcn
def peak(emg, gain):
    return float(np.max(emg)) * gain
