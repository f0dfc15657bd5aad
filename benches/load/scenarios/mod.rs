//! The scenarios, one file each, every one a method of [`Bench`](crate::Bench) that runs its
//! servers and clients `Bench::runs` times and adds its rows to the table.

mod bulk;
mod crowd;
mod flood;
mod lesson;
mod pacing;
mod rate;
mod soak;
mod startup;
