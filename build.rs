//! Chooses the BPF object the eBPF backend embeds: the one committed beside its C source
//! (`ebpf/mqtt_keepalive.bpf.o`), or, with the `ebpf-rebuild` feature, one compiled here from
//! `ebpf/mqtt_keepalive.bpf.c` with clang (`apt-get install clang libbpf-dev`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let source = manifest.join("ebpf/mqtt_keepalive.bpf.c");
    let committed = manifest.join("ebpf/mqtt_keepalive.bpf.o");
    println!("cargo:rerun-if-changed={}", committed.display());
    let target_arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let (object, arch) = if std::env::var_os("CARGO_FEATURE_EBPF_REBUILD").is_some() {
        println!("cargo:rerun-if-changed={}", source.display());
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("mqtt_keepalive.bpf.o");
        let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
        // The probes read function arguments from `struct pt_regs`, whose layout is the CPU's.
        let (define, include) = match target_arch.as_str() {
            "aarch64" => ("-D__TARGET_ARCH_arm64", "-I/usr/include/aarch64-linux-gnu"),
            _ => ("-D__TARGET_ARCH_x86", "-I/usr/include/x86_64-linux-gnu"),
        };
        let status = Command::new(&clang)
            .args(["-target", "bpf", "-O2", "-g", define, include, "-c"])
            .arg(&source)
            .arg("-o")
            .arg(&out)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{clang} failed ({s}) compiling {}", source.display()),
            Err(e) => panic!(
                "the ebpf-rebuild feature compiles {} with clang, which cannot be run ({clang}: {e}); \
                 install it with `apt-get install clang libbpf-dev`, or build without the feature to use \
                 the committed object",
                source.display()
            ),
        }
        (out, target_arch)
    } else {
        // The committed object was compiled for x86_64.
        (committed, "x86_64".to_string())
    };
    println!("cargo:rustc-env=MQTT_KEEPALIVE_BPF_OBJECT={}", object.display());
    println!("cargo:rustc-env=MQTT_KEEPALIVE_BPF_ARCH={arch}");
}
