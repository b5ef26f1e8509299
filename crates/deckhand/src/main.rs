//! The deckhand binary: parses flags and wires the crates together. No logic lives here.

fn main() {
    println!("deckhand");
}
