//! Rebuilds the binary when the embedded web client changes (rust-embed
//! cannot tell cargo about files added later, e.g. the generated web/wasm/),
//! and warns when the browser's end-to-end encryption module is missing.

fn main() {
    println!("cargo:rerun-if-changed=../../web");
    if !std::path::Path::new("../../web/wasm/plenary_e2ee_bg.wasm").exists() {
        println!(
            "cargo:warning=web/wasm/ is missing: browsers cannot join end-to-end encrypted meetings; \
             run scripts/run.sh or bash scripts/build-wasm.sh first"
        );
    }
}
