//! Pull/import progress for people: a bar per layer plus a total with speed on a terminal,
//! one plain log line per layer step otherwise (CI logs, pipes), so both stay readable.

use deckhand_image::digest::Digest;
use deckhand_image::progress::{ProgressEvent, ProgressSink};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Build the sink for this process's stdout.
pub fn sink() -> ProgressSink {
    if std::io::stdout().is_terminal() {
        let bars = Mutex::new(Bars::new());
        Arc::new(move |ev| bars.lock().unwrap_or_else(|e| e.into_inner()).handle(ev))
    } else {
        Arc::new(log_line)
    }
}

pub fn short(d: &Digest) -> String {
    format!("sha256:{}", &d.hex()[..12])
}

pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!("{}/s", indicatif::HumanBytes((bytes as f64 / secs) as u64))
}

fn log_line(ev: ProgressEvent) {
    let line = match ev {
        ProgressEvent::Resolved {
            reference,
            manifest,
            layers,
        } => {
            let total: u64 = layers.iter().map(|(_, s)| s).sum();
            format!(
                "resolved {reference} to {} ({} layers, {})",
                short(&manifest),
                layers.len(),
                human_bytes(total)
            )
        }
        ProgressEvent::LayerExists { digest, size } => {
            format!(
                "layer {} already present ({})",
                short(&digest),
                human_bytes(size)
            )
        }
        ProgressEvent::LayerStarted {
            digest,
            size,
            offset,
        } if offset > 0 => format!(
            "layer {} downloading {} (resuming at {})",
            short(&digest),
            human_bytes(size),
            human_bytes(offset)
        ),
        ProgressEvent::LayerStarted { digest, size, .. } => {
            format!("layer {} downloading {}", short(&digest), human_bytes(size))
        }
        ProgressEvent::LayerProgress { .. } => return,
        ProgressEvent::LayerRetry {
            digest,
            attempt,
            error,
        } => {
            format!("layer {} retry {attempt}: {error}", short(&digest))
        }
        ProgressEvent::LayerDownloaded {
            digest,
            size,
            elapsed,
        } => format!(
            "layer {} downloaded {} in {:.2?} ({})",
            short(&digest),
            human_bytes(size),
            elapsed,
            rate(size, elapsed)
        ),
        ProgressEvent::LayerUnpacked {
            digest, bytes: 0, ..
        } => {
            format!("layer {} snapshot already present", short(&digest))
        }
        ProgressEvent::LayerUnpacked {
            digest,
            bytes,
            elapsed,
            ..
        } => format!(
            "layer {} unpacked {} in {:.2?} ({})",
            short(&digest),
            human_bytes(bytes),
            elapsed,
            rate(bytes, elapsed)
        ),
        ProgressEvent::Done {
            reference, elapsed, ..
        } => {
            format!("done {reference} in {elapsed:.2?}")
        }
    };
    println!("{line}");
}

/// Terminal rendering: one bar per layer, one total bar with aggregate speed.
struct Bars {
    multi: MultiProgress,
    layers: HashMap<Digest, ProgressBar>,
    downloaded: HashMap<Digest, u64>,
    total: Option<ProgressBar>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            layers: HashMap::new(),
            downloaded: HashMap::new(),
            total: None,
        }
    }

    fn layer_style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    }

    fn total_style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30.green/blue}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} elapsed {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    }

    fn update_total(&mut self) {
        if let Some(total) = &self.total {
            total.set_position(self.downloaded.values().sum());
        }
    }

    fn handle(&mut self, ev: ProgressEvent) {
        match ev {
            ProgressEvent::Resolved {
                reference,
                manifest,
                layers,
            } => {
                let _ = self
                    .multi
                    .println(format!("{reference}: manifest {}", short(&manifest)));
                let total_size: u64 = layers.iter().map(|(_, s)| s).sum();
                for (digest, size) in layers {
                    let bar = self.multi.add(ProgressBar::new(size));
                    bar.set_style(Self::layer_style());
                    bar.set_prefix(short(&digest));
                    bar.set_message("waiting");
                    self.layers.insert(digest, bar);
                }
                let total = self.multi.add(ProgressBar::new(total_size));
                total.set_style(Self::total_style());
                total.set_prefix(format!("{:<19}", "total"));
                self.total = Some(total);
            }
            ProgressEvent::LayerExists { digest, size } => {
                if let Some(bar) = self.layers.get(&digest) {
                    bar.set_position(size);
                    bar.set_message("already present");
                }
                self.downloaded.insert(digest, size);
                self.update_total();
            }
            ProgressEvent::LayerStarted { digest, offset, .. } => {
                if let Some(bar) = self.layers.get(&digest) {
                    bar.reset_elapsed();
                    bar.set_position(offset);
                    bar.set_message(if offset > 0 {
                        "resuming"
                    } else {
                        "downloading"
                    });
                }
                self.downloaded.insert(digest, offset);
                self.update_total();
            }
            ProgressEvent::LayerProgress {
                digest, downloaded, ..
            } => {
                if let Some(bar) = self.layers.get(&digest) {
                    bar.set_position(downloaded);
                }
                self.downloaded.insert(digest, downloaded);
                self.update_total();
            }
            ProgressEvent::LayerRetry {
                digest,
                attempt,
                error,
            } => {
                if let Some(bar) = self.layers.get(&digest) {
                    bar.set_message(format!("retry {attempt}: {error}"));
                }
            }
            ProgressEvent::LayerDownloaded { digest, size, .. } => {
                if let Some(bar) = self.layers.get(&digest) {
                    bar.set_position(size);
                    bar.set_message("downloaded, unpacking");
                }
                self.downloaded.insert(digest, size);
                self.update_total();
            }
            ProgressEvent::LayerUnpacked {
                digest,
                bytes,
                elapsed,
                ..
            } => {
                if let Some(bar) = self.layers.get(&digest) {
                    let msg = if bytes == 0 {
                        "done".to_string()
                    } else {
                        format!("unpacked {} in {elapsed:.1?}", human_bytes(bytes))
                    };
                    bar.finish_with_message(msg);
                }
            }
            ProgressEvent::Done { .. } => {
                for bar in self.layers.values() {
                    if !bar.is_finished() {
                        bar.finish();
                    }
                }
                if let Some(total) = &self.total {
                    total.finish();
                }
            }
        }
    }
}
