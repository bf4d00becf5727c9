//! Placeholder: the fan-out benchmark (issue 3).
fn main() {}
