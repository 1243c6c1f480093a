//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files of
//! `../migrations`, but only files that existed at the last build are watched.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
