//! Known-answer and Wycheproof vectors (being written).
