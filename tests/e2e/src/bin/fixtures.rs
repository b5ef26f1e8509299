//! `fixtures <out-dir>`: writes every fixture image layout (and its `<name>.json` description)
//! into `<out-dir>`. Used by `scripts/bench/image-pull.sh`.

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: fixtures <out-dir>"))?;
    let f = deckhand_e2e::fixtures::build_all(std::path::Path::new(&out))?;
    for name in deckhand_e2e::fixtures::ALL {
        let info = f.info(name);
        println!("{name}\t{}\t{}", info.layout.display(), info.digest);
    }
    Ok(())
}
