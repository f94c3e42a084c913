//! TODO(helper) stub
use crate::domain::{MerchantTransactionId, StatusError, StatusReport};
#[derive(Clone)]
pub struct PhonePeClient;
impl PhonePeClient {
    pub fn new(_s: &crate::config::PhonePeSettings) -> anyhow::Result<Self> { Ok(PhonePeClient) }
    pub async fn check_status(&self, _m: &MerchantTransactionId) -> Result<StatusReport, StatusError> { todo!() }
}
