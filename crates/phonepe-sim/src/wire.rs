//! PhonePe's JSON, as PhonePe documents it: the v1 check-status answer and the v2 order-status
//! answer and error body. The simulator serialises these; they are its own reading of PhonePe's
//! documentation and of the official SDK's response models, deliberately not the product's
//! parser types, so the product's tests (client against simulator, and PhonePe's own Python SDK
//! against simulator) check two independent readings against each other.

use serde::Serialize;

/// v1 `code` values the simulator answers with (an answer may script any other).
pub(crate) mod codes {
    pub const PAYMENT_SUCCESS: &str = "PAYMENT_SUCCESS";
    pub const PAYMENT_ERROR: &str = "PAYMENT_ERROR";
    pub const PAYMENT_PENDING: &str = "PAYMENT_PENDING";
    pub const TRANSACTION_NOT_FOUND: &str = "TRANSACTION_NOT_FOUND";
    pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    pub const AUTHORIZATION_FAILED: &str = "AUTHORIZATION_FAILED";
    pub const TOO_MANY_REQUESTS: &str = "TOO_MANY_REQUESTS";
}

/// v1 `data.state` values.
pub(crate) mod states {
    pub const COMPLETED: &str = "COMPLETED";
    pub const FAILED: &str = "FAILED";
    pub const PENDING: &str = "PENDING";
}

/// The v1 check-status answer:
/// `{"success", "code", "message", "data": {"merchantId", "merchantTransactionId",
/// "transactionId", "amount", "state", "responseCode", "paymentInstrument"}}` (amount in paise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusResponse {
    pub success: bool,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<StatusData>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusData {
    pub merchant_id: String,
    pub merchant_transaction_id: String,
    pub transaction_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    pub state: String,
    pub response_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_instrument: Option<PaymentInstrument>,
}

/// `data.paymentInstrument`, UPI only (PhonePe sends more fields per instrument type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PaymentInstrument {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utr: Option<String>,
}

/// API v2 (Standard Checkout): `GET /checkout/v2/order/{merchantOrderId}/status`.
pub(crate) mod v2 {
    use serde::Serialize;

    /// Root `state` of an order (an attempt's `state` uses the same words).
    pub mod states {
        pub const COMPLETED: &str = "COMPLETED";
        pub const FAILED: &str = "FAILED";
        pub const PENDING: &str = "PENDING";
    }

    /// The code of a 404 about an order PhonePe does not know.
    pub const ORDER_NOT_FOUND: &str = "ORDER_NOT_FOUND";
    /// The code of a 401 (no token, or one not issued or expired).
    pub const AUTHORIZATION_FAILED: &str = "AUTHORIZATION_FAILED";

    /// The order-status answer (also a v2 webhook's `payload`); amounts in paise, times in epoch
    /// milliseconds. `merchantId` is optional in PhonePe's answers.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct OrderStatus {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub merchant_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub merchant_order_id: Option<String>,
        pub order_id: String,
        pub state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub amount: Option<i64>,
        pub expire_at: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub error_code: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub payment_details: Vec<PaymentDetail>,
    }

    /// One payment attempt (`paymentDetails[]`; the latest only unless `details=true`).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PaymentDetail {
        pub transaction_id: String,
        pub payment_mode: String,
        pub timestamp: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub amount: Option<i64>,
        pub state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub error_code: Option<String>,
    }

    /// A v2 error body: `{"code", "message"}`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct ErrorBody {
        pub code: String,
        pub message: String,
    }
}
