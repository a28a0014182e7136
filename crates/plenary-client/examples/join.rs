//! Minimal command line for trying the client without the `plenary`
//! binary: `cargo run --release -p plenary-client --example join -- URL
//! [--video F.ivf] [--audio F.ogg] [--duration S] [--record DIR] [--json]`.

use std::time::Duration;

#[tokio::main]
async fn main() {
    tracing_subscriber_init();
    let mut args = std::env::args().skip(1);
    let mut opts = plenary_client::JoinOptions { name: "example".into(), ..Default::default() };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--video" => opts.video = args.next().map(Into::into),
            "--audio" => opts.audio = args.next().map(Into::into),
            "--record" => opts.record = args.next().map(Into::into),
            "--name" => opts.name = args.next().unwrap_or_default(),
            "--duration" => {
                opts.duration = args.next().and_then(|s| s.parse::<f64>().ok()).map(Duration::from_secs_f64)
            }
            "--json" => opts.json = true,
            url => opts.url = url.to_owned(),
        }
    }
    if let Err(e) = plenary_client::join(opts).await {
        eprintln!("plenary join: {e}");
        std::process::exit(1);
    }
}

fn tracing_subscriber_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLENARY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
