//! TODO(helper): replaced by the real ops module.
use std::time::Duration;
#[derive(Clone)]
pub struct Health;
impl Health {
    pub fn new(_interval: Duration) -> Health { Health }
    pub fn scanner_ticked(&self) {}
    pub fn set_supervisor_alive(&self, _alive: bool) {}
}
