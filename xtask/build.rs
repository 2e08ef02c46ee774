//! Records the target triple so the `cc` crate can find the C compiler at run time.

fn main() {
    for var in ["TARGET", "HOST"] {
        let value = std::env::var(var).expect("cargo sets TARGET and HOST for build scripts");
        println!("cargo:rustc-env=XTASK_{var}={value}");
    }
}
