//! Plenary native client (in progress).
