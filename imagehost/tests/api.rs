//! imagehost's upload and serving contract, in-process, over two real fileservers (directories
//! or Garage instances), a Hive API node stand-in, and Redis where quotas are shared.

mod api {
    pub mod avif;
    pub mod contract;
    pub mod crash;
    pub mod deadlines;
    pub mod faults;
    pub mod fixture;
    pub mod hivesigner;
    pub mod hostile;
    pub mod images;
    pub mod inputs;
    pub mod mutated;
    pub mod progressive;
    pub mod proxy;
    pub mod quota;
    pub mod render_limit;
    pub mod shrink;
    pub mod ssrf;
    pub mod takedown;
}
