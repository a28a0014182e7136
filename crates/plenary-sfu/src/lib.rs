//! Plenary SFU core (in progress).
