//! Apply one layer blob to an empty directory and report throughput: the unpack half of the
//! image-pull benchmark (`scripts/bench/`), and a manual tool for odd layers.
//!
//! `apply_layer <layer-file> <empty-target-dir> [parent-dir...]` (compression is sniffed).

use deckhand_image::media::Compression;
use deckhand_image::unpack::apply_layer;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!(
            "usage: {} <layer-file> <empty-target-dir> [parent-dir...]",
            args[0]
        );
        std::process::exit(2);
    }
    let file = std::fs::File::open(&args[1]).unwrap_or_else(|e| panic!("open {}: {e}", args[1]));
    let compressed = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let compression = Compression::detect(reader.fill_buf().expect("read layer"));
    let target = PathBuf::from(&args[2]);
    std::fs::create_dir_all(&target).expect("create target");
    let parents: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();
    let start = Instant::now();
    let (diff, stats) = apply_layer(reader, compression, &target, &parents).unwrap_or_else(|e| {
        eprintln!("apply_layer: {e}");
        std::process::exit(1);
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{diff} {:?} entries={} tar_bytes={} compressed={} seconds={:.3} tar_MB/s={:.1}",
        compression,
        stats.entries,
        stats.tar_bytes,
        compressed,
        secs,
        stats.tar_bytes as f64 / secs / 1e6
    );
}
