//! Links the HVM guest with its own linker script: at 1 MiB, entered by
//! the 32-bit boot stub of `pvrt::hvm`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/hvm.ld");
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rerun-if-changed=hvm.ld");
}
