//! `deckhand image …`: wiring from flags to [`deckhand_image::ImageStore`], and output.

use crate::cli::{ImageCommand, OutputFormat};
use crate::progress;
use anyhow::{Context, Result};
use deckhand_image::import::ImportOptions;
use deckhand_image::manifest::Platform;
use deckhand_image::pull::PullOptions;
use deckhand_image::registry::auth::Credentials;
use deckhand_image::{Image, ImageStore, Reference, StoreConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub async fn run(data_dir: &Path, command: ImageCommand) -> Result<()> {
    let mut config = StoreConfig::new(data_dir);
    if let ImageCommand::Pull(args) = &command {
        config.docker_config = args.docker_config.clone();
    }
    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || ImageStore::open(config))
            .await?
            .with_context(|| format!("cannot open the image store in {}", data_dir.display()))?
    };
    let store = Arc::new(store);
    match command {
        ImageCommand::Pull(args) => {
            let reference = Reference::parse(&args.reference)?;
            let platform = parse_platform(args.platform.as_deref())?;
            let credentials = args.creds.as_deref().map(parse_creds).transpose()?;
            let started = Instant::now();
            let options = PullOptions {
                platform,
                credentials,
                progress: progress::sink(),
            };
            let image = store.pull(&reference, options).await?;
            if args.quiet {
                println!("{}", image.id);
            } else {
                println!(
                    "pulled {} (id {}, {}, {:.2?})",
                    image.name,
                    progress::short(&image.id),
                    progress::human_bytes(image.size),
                    started.elapsed()
                );
            }
        }
        ImageCommand::Import(args) => {
            let platform = parse_platform(args.platform.as_deref())?;
            let options = ImportOptions {
                name: args.name,
                platform,
                progress: progress::sink(),
            };
            let images = store.import(&args.path, options).await?;
            for image in images {
                println!(
                    "imported {} (id {})",
                    image.name,
                    progress::short(&image.id)
                );
            }
        }
        ImageCommand::Ls(args) => {
            let images = blocking(&store, |s| s.list()).await?;
            print_list(&images, args.quiet, args.digests, args.output)?;
        }
        ImageCommand::Inspect(args) => {
            let image = blocking(&store, move |s| s.get(&args.reference)).await?;
            println!("{}", serde_json::to_string_pretty(&image)?);
        }
        ImageCommand::Rm(args) => {
            let force = args.force;
            for reference in args.references {
                let report = blocking(&store, move |s| s.remove(&reference, force)).await?;
                for name in report.untagged {
                    println!("untagged {name}");
                }
            }
            let report = blocking(&store, |s| s.prune()).await?;
            if !report.blobs.is_empty() || !report.snapshots.is_empty() {
                println!(
                    "deleted {} blobs and {} snapshots, freed {}",
                    report.blobs.len(),
                    report.snapshots.len(),
                    progress::human_bytes(report.bytes_freed)
                );
            }
        }
        ImageCommand::Prune => {
            let report = blocking(&store, |s| s.prune()).await?;
            println!(
                "deleted {} blobs and {} snapshots, freed {}",
                report.blobs.len(),
                report.snapshots.len(),
                progress::human_bytes(report.bytes_freed)
            );
        }
        ImageCommand::Verify => {
            let report = blocking(&store, |s| s.verify()).await?;
            if report.problems.is_empty() {
                println!(
                    "{} images, {} blobs, {} snapshots verified",
                    report.images, report.blobs, report.snapshots
                );
                println!("ok");
            } else {
                for p in &report.problems {
                    println!("{p}");
                }
                anyhow::bail!("the image store has {} problem(s); `deckhand image prune` removes unreferenced damage, re-pull affected images", report.problems.len());
            }
        }
    }
    Ok(())
}

/// Store calls touch the disk (and may hash gigabytes): keep them off the async workers.
async fn blocking<T: Send + 'static>(
    store: &Arc<ImageStore>,
    f: impl FnOnce(&ImageStore) -> Result<T, deckhand_image::StoreError> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
}

fn parse_platform(p: Option<&str>) -> Result<Platform> {
    Ok(match p {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    })
}

fn parse_creds(s: &str) -> Result<Credentials> {
    let (username, password) = s
        .split_once(':')
        .context("--creds must be USER:PASSWORD (the password may be empty, the colon may not)")?;
    Ok(Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// Split a stored name into what people read as IMAGE and TAG (crictl's columns).
fn repo_and_tag(name: &str) -> (String, String) {
    match Reference::parse(name) {
        Ok(r) => (r.name(), r.tag.unwrap_or_else(|| "<none>".to_string())),
        Err(_) => (name.to_string(), "<none>".to_string()),
    }
}

fn print_list(images: &[Image], quiet: bool, digests: bool, output: OutputFormat) -> Result<()> {
    if let OutputFormat::Json = output {
        println!("{}", serde_json::to_string_pretty(images)?);
        return Ok(());
    }
    if quiet {
        let mut seen = std::collections::BTreeSet::new();
        for i in images {
            if seen.insert(i.id.clone()) {
                println!("{}", i.id);
            }
        }
        return Ok(());
    }
    let mut rows = vec![];
    for i in images {
        let (repo, tag) = repo_and_tag(&i.name);
        let mut row = vec![repo, tag];
        if digests {
            row.push(progress::short(&i.digest));
        }
        row.push(i.id.hex()[..13].to_string());
        row.push(progress::human_bytes(i.size));
        rows.push(row);
    }
    rows.sort();
    let mut header = vec!["IMAGE", "TAG"];
    if digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "SIZE"]);
    let header: Vec<String> = header.into_iter().map(String::from).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(())
}
