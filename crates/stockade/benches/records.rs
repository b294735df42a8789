//! criterion benchmarks: records.

fn main() {}
