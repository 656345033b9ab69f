//! Offline replay of CSV series through the detector (filled in by the model work).
