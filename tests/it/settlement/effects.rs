//! What a settlement does to the orders: late payments recorded and parked, drafts asked about
//! at once, refunds settled; and the gauge the running service reads from the database.
