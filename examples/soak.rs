//! The soak driver for hack/soak.sh (being written).
fn main() {}
