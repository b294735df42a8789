//! Rebuilds when a migration is added or changed: `sqlx::migrate!` embeds
//! the files, and cargo does not otherwise know they are inputs.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
