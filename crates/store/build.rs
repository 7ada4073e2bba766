//! Rebuilds the store when a migration is added or changed: `sqlx::migrate!` embeds
//! `migrations/{sqlite,postgres}` at compile time, and on a stable compiler cargo cannot see
//! that the macro read those directories (sqlx's documented build-script fix).

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
