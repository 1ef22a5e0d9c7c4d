//! The machine's activation store. PLACEHOLDER — being implemented.
