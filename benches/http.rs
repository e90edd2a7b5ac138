//! Placeholder until the benchmark program lands.
fn main() {}
