//! criterion benchmarks: apikeys.

fn main() {}
