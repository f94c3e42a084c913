//! Found by the audit: a PAYMENT in our own settlement report for an order the status API said
//! was paid to another merchant (`merchant_mismatch`, in review or closed by an operator as
//! `cancelled` / `paid`) was `payment_known`: our money on an order nobody fulfils or refunds,
//! and no discrepancy, no alert. It is `amount_differs` (we recorded nothing paid to us).

use mongodb::bson::doc;

use super::*;

#[test]
fn a_settled_payment_for_an_order_recorded_as_paid_to_another_merchant_is_a_discrepancy() {
    let w = World::new("settle_paid_elsewhere");
    order_in(&w, "SE-OPEN", 49_900, "needs_review", "paid");
    w.update_order(
        doc! { "merchantTransactionId": "SE-OPEN" },
        doc! { "$set": { "reconciliation.reason": "merchant_mismatch" } },
    );
    order_in(&w, "SE-CLOSED", 49_900, "cancelled", "paid");
    w.update_order(
        doc! { "merchantTransactionId": "SE-CLOSED" },
        doc! { "$set": { "reconciliation.reason": "operator_cancelled" } },
    );
    let before = (w.order("SE-OPEN"), w.order("SE-CLOSED"));
    let d = dir();
    let file = path(&d, "elsewhere.csv");
    super::files::write_csv(&file, &[payment("SE-OPEN", 49_900), payment("SE-CLOSED", 49_900)]);
    import(&w, &[&file], 0);
    for mtid in ["SE-OPEN", "SE-CLOSED"] {
        assert_eq!(
            outcome(&w, "PAYMENT", mtid),
            ("discrepancy".to_string(), Some("amount_differs".to_string())),
            "{mtid}"
        );
    }
    assert_eq!(
        (w.order("SE-OPEN"), w.order("SE-CLOSED")),
        before,
        "the orders are not changed"
    );
}
