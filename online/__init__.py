"""River learners, drift detectors, online metrics and the retrain policy."""
