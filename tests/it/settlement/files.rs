//! Importing reports: CSV and XLSX alike, again and overlapping without change, a malformed file
//! refused whole; what the report says (totals, discrepancies, `not_settled`).

use std::io::Write as _;
use std::path::Path;

use mongodb::bson::Document;

use super::*;

const HEADER: [&str; 14] = [
    "PaymentType",
    "MerchantReferenceId",
    "PhonePeReferenceId",
    "From",
    "Instrument",
    "CreationDate",
    "Amount",
    "Fee",
    "TransactionDate",
    "SettlementDate",
    "BankReferenceNo",
    "IGST",
    "CGST",
    "SGST",
];

fn rupees(p: i64) -> String {
    draft_reconciler::settlement::rupees(p)
}

/// `yyyy-mm-dd HH:MM:SS` → `dd-mm-yyyy HH:MM:SS`, as the dashboard's CSV writes it.
fn dmy(s: &str) -> String {
    format!("{}-{}-{}{}", &s[8..10], &s[5..7], &s[..4], &s[10..])
}

/// The report as a CSV file (amounts as rupees text, dates `dd-MM-yyyy HH:mm:ss`).
pub fn write_csv(path: &Path, specs: &[Spec]) {
    let mut f = std::fs::File::create(path).expect("create csv");
    writeln!(f, "{}", HEADER.join(",")).unwrap();
    for s in specs {
        writeln!(
            f,
            "{},{},{},\"Rao, Asha\",UPI,{},{},{},{},{},UTR{},{},0.00,0.00",
            s.kind,
            s.mref,
            s.pref,
            dmy(s.txn),
            rupees(s.amount),
            rupees(s.fee),
            dmy(s.txn),
            dmy(s.settled),
            &s.settled[..10].replace('-', ""),
            rupees(s.igst),
        )
        .unwrap();
    }
}

/// The same report as XLSX: two title rows, amounts as numbers, dates as Excel dates.
pub fn write_xlsx(path: &Path, specs: &[Spec]) {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let date = Format::new().set_num_format("dd-mm-yyyy hh:mm:ss");
    sheet.write_string(0, 0, "PhonePe Settlement Report").unwrap();
    sheet.write_string(1, 0, "Merchant: MERCHANTUAT").unwrap();
    for (c, h) in HEADER.iter().enumerate() {
        sheet.write_string(3, c as u16, *h).unwrap();
    }
    let when = |s: &str| {
        let n = |a: usize, b: usize| s[a..b].parse::<u16>().unwrap();
        ExcelDateTime::from_ymd(n(0, 4), n(5, 7) as u8, n(8, 10) as u8)
            .unwrap()
            .and_hms(n(11, 13), n(14, 16) as u8, n(17, 19) as f64)
            .unwrap()
    };
    for (i, s) in specs.iter().enumerate() {
        let r = 4 + i as u32;
        sheet.write_string(r, 0, s.kind).unwrap();
        sheet.write_string(r, 1, &s.mref).unwrap();
        sheet.write_string(r, 2, &s.pref).unwrap();
        sheet.write_string(r, 3, "Rao, Asha").unwrap();
        sheet.write_string(r, 4, "UPI").unwrap();
        sheet.write_datetime_with_format(r, 5, when(s.txn), &date).unwrap();
        sheet.write_number(r, 6, s.amount as f64 / 100.0).unwrap();
        sheet.write_number(r, 7, s.fee as f64 / 100.0).unwrap();
        sheet.write_datetime_with_format(r, 8, when(s.txn), &date).unwrap();
        sheet.write_datetime_with_format(r, 9, when(s.settled), &date).unwrap();
        sheet
            .write_string(r, 10, format!("UTR{}", s.settled[..10].replace('-', "")))
            .unwrap();
        sheet.write_number(r, 11, s.igst as f64 / 100.0).unwrap();
        sheet.write_number(r, 12, 0.0).unwrap();
        sheet.write_number(r, 13, 0.0).unwrap();
    }
    book.save(path).expect("save xlsx");
}

/// A row as stored, without where and when it was imported.
fn comparable(mut d: Document) -> Document {
    for k in ["file", "line", "importedAt"] {
        d.remove(k);
    }
    if let Ok(m) = d.get_document_mut("match") {
        m.remove("at");
    }
    d
}

fn shop(w: &World) {
    confirmed(w, "ST-A", 49_900, "2024-01-15 09:00:00");
    confirmed(w, "ST-B", 120_050, "2024-01-15 09:30:00");
    order_in(w, "ST-D", 10_000, "confirmed", "paid");
}

fn specs() -> Vec<Spec> {
    let mut late = payment("ST-B", 120_050);
    late.settled = "2024-01-17 09:00:00";
    vec![
        payment("ST-A", 49_900),
        late,
        payment("ST-D", 9_900),
        payment("ST-X", 5_000),
    ]
}

#[test]
fn a_csv_and_an_xlsx_of_the_same_rows_import_identically() {
    let d = dir();
    let (csv, xlsx) = (path(&d, "settle.csv"), path(&d, "settle.xlsx"));
    write_csv(&csv, &specs());
    write_xlsx(&xlsx, &specs());
    let (a, b) = (World::new("settle_csv"), World::new("settle_xlsx"));
    shop(&a);
    shop(&b);
    import(&a, &[&csv], 0);
    import(&b, &[&xlsx], 0);
    let (ra, rb): (Vec<Document>, Vec<Document>) = (
        rows(&a).into_iter().map(comparable).collect(),
        rows(&b).into_iter().map(comparable).collect(),
    );
    assert_eq!(ra.len(), 4);
    assert_eq!(ra, rb);
    assert_eq!(mark(&a, "ST-A"), mark(&b, "ST-A"));
    let m = mark(&a, "ST-A").expect("ST-A is marked settled");
    assert_eq!(m.get_i64("fee"), Ok(-998));
    assert_eq!(m.get_i64("tax"), Ok(-179));
    assert_eq!(m.get_i64("net"), Ok(49_900 - 998 - 179));
    assert_eq!(m.get_str("utr"), Ok("UTR20240116"));
    assert_eq!(m.get_datetime("settledAt"), Ok(&india("2024-01-16 09:00:00")));
    assert_eq!(
        outcome(&a, "PAYMENT", "ST-D"),
        ("discrepancy".into(), Some("amount_differs".into()))
    );
    assert_eq!(
        outcome(&a, "PAYMENT", "ST-X"),
        ("discrepancy".into(), Some("unknown_order".into()))
    );
    assert_eq!(
        mark(&a, "ST-D"),
        None,
        "an amount that differs changes nothing on the order"
    );
    assert_eq!(a.status("ST-D"), ("confirmed".into(), "paid".into()));
    let r = row(&a, "PAYMENT", "ST-A");
    assert!(
        r.get("From").is_none() && r.get("from").is_none(),
        "the payer is never stored: {r:?}"
    );
}

/// Everything an import can change: the rows and the orders.
fn snapshot(w: &World) -> (Vec<Document>, Vec<Document>) {
    (rows(w), w.all_orders())
}

#[test]
fn importing_again_or_an_overlapping_file_changes_nothing_twice() {
    let w = World::new("settle_again");
    shop(&w);
    let d = dir();
    let first = path(&d, "day1.csv");
    write_csv(&first, &specs()[..2]);
    import(&w, &[&first], 0);
    let before = snapshot(&w);
    let again = import(&w, &[&first], 0);
    assert!(text(&again).contains("already_imported 2"), "{}", text(&again));
    assert_eq!(snapshot(&w), before, "the same file again changes nothing");

    // The next download overlaps the first: its two old rows count once.
    let overlap = path(&d, "week.xlsx");
    write_xlsx(&overlap, &specs());
    let out = import(&w, &[&overlap], 0);
    assert!(text(&out).contains("4 row(s), 2 new"), "{}", text(&out));
    assert_eq!(rows(&w).len(), 4);
    let now = rows(&w);
    for old in &before.0 {
        assert!(now.contains(old), "an old row was rewritten: {old:?}");
    }

    // Twice in one file counts once.
    let twice = path(&d, "twice.csv");
    let mut dup = specs();
    dup.push(payment("ST-A", 49_900));
    write_csv(&twice, &dup);
    let out = import(&w, &[&twice], 0);
    assert!(text(&out).contains("already_imported 5"), "{}", text(&out));
    assert_eq!(rows(&w).len(), 4);
}

#[test]
fn the_same_key_with_other_values_keeps_the_first_and_is_a_discrepancy() {
    let w = World::new("settle_conflict");
    shop(&w);
    let d = dir();
    let first = path(&d, "a.csv");
    write_csv(&first, &[payment("ST-A", 49_900)]);
    import(&w, &[&first], 0);
    let mut other = payment("ST-A", 49_900);
    other.fee -= 100;
    let second = path(&d, "b.csv");
    write_csv(&second, &[other]);
    let out = import(&w, &[&second], 0);
    assert!(text(&out).contains("conflicting_rows"), "{}", text(&out));
    let r = row(&w, "PAYMENT", "ST-A");
    assert_eq!(r.get_i64("fee"), Ok(-998), "the first is kept");
    let conflicts = r.get_array("conflicts").expect("the second is kept beside it");
    assert_eq!(conflicts.len(), 1);
    assert_eq!(mark(&w, "ST-A").and_then(|m| m.get_i64("fee").ok()), Some(-998));
    import(&w, &[&second], 0);
    assert_eq!(
        row(&w, "PAYMENT", "ST-A").get_array("conflicts").map(Vec::len),
        Ok(1),
        "once"
    );
    assert_eq!(
        kinds(&report(&w, &[])),
        [("conflicting_rows".to_string(), "ST-A".to_string())]
    );
}

#[test]
fn a_malformed_file_writes_nothing_and_names_the_line_and_column() {
    let w = World::new("settle_malformed");
    shop(&w);
    let d = dir();
    let bad = path(&d, "bad.csv");
    write_csv(&bad, &specs());
    let text_of = std::fs::read_to_string(&bad).unwrap();
    let broken = text_of.replacen("1200.50", "1200.505", 1);
    assert_ne!(broken, text_of);
    std::fs::write(&bad, broken).unwrap();
    let good = path(&d, "good.csv");
    write_csv(&good, &specs()[..1]);
    let before = w.all_orders();

    let out = import(&w, &[&bad], 2);
    let t = text(&out);
    assert!(
        t.contains("bad.csv: line 3, column 7 (Amount): `1200.505` has more than two decimals"),
        "{t}"
    );
    assert!(
        rows(&w).is_empty(),
        "nothing of the file is written, not even its good rows"
    );
    assert_eq!(w.all_orders(), before, "no order touched");

    // With a good file beside it: the good one is imported, the run still exits 2.
    let out = import(&w, &[&bad, &good], 2);
    assert!(text(&out).contains("line 3, column 7"), "{}", text(&out));
    assert_eq!(rows(&w).len(), 1);
    assert!(mark(&w, "ST-A").is_some());
    assert!(mark(&w, "ST-B").is_none());
}

#[test]
fn the_report_totals_each_settlement_day_exactly_and_filters_by_date() {
    let w = World::new("settle_report");
    shop(&w);
    let d = dir();
    let file = path(&d, "week.csv");
    let mut rows_in = specs();
    rows_in.push(refund("RF-NOBODY", 2_500));
    write_csv(&file, &rows_in);
    import(&w, &[&file], 0);
    let rep = report(&w, &[]);
    let days = rep["days"].as_array().expect("days");
    assert_eq!(days.len(), 2, "{rep}");
    // Tuesday: ST-A, ST-D, ST-X and the refund; Wednesday: ST-B.
    let tue = &days[0];
    assert_eq!(tue["date"], "2024-01-16");
    assert_eq!(tue["rows"], 4);
    assert_eq!(tue["gross"], 49_900 + 9_900 + 5_000);
    assert_eq!(tue["refunds"], -2_500);
    assert_eq!(tue["fees"], -(998 + 198 + 100));
    assert_eq!(tue["taxes"], -(179 + 35 + 18));
    assert_eq!(
        tue["net"],
        49_900 + 9_900 + 5_000 - 2_500 - (998 + 198 + 100) - (179 + 35 + 18)
    );
    assert_eq!(days[1]["date"], "2024-01-17");
    assert_eq!(days[1]["net"], 120_050 - 2_401 - 432);
    assert_eq!(
        rep["totals"]["net"],
        tue["net"].as_i64().unwrap() + days[1]["net"].as_i64().unwrap()
    );
    assert_eq!(
        kinds(&rep),
        [
            ("amount_differs".to_string(), "ST-D".to_string()),
            ("unknown_order".to_string(), "ST-X".to_string()),
            ("unknown_refund".to_string(), "RF-NOBODY".to_string()),
        ]
    );
    let only_wed = report(&w, &["--from", "2024-01-17", "--to", "2024-01-17"]);
    assert_eq!(only_wed["days"].as_array().map(Vec::len), Some(1));
    assert!(kinds(&only_wed).is_empty(), "{only_wed}");

    let out = run(&w, &["settlement", "report", "--csv"]);
    let csv = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        csv.starts_with("date,rows,gross,fees,taxes,refunds,net\n2024-01-16,4,648.00,-12.96,-2.32,-25.00,607.72\n"),
        "{csv}"
    );
    let bad = run(&w, &["settlement", "report", "--from", "17-01-2024"]);
    assert_eq!(code(&bad), 2, "{}", text(&bad));
}

#[test]
fn a_confirmed_order_missing_from_a_covering_report_is_not_settled_until_its_row_comes() {
    let w = World::new("settle_not_settled");
    // Confirmed Monday 15th and Friday 19th; none of them paid out yet.
    confirmed(&w, "NS-MON", 30_000, "2024-01-15 11:00:00");
    confirmed(&w, "NS-FRI", 40_000, "2024-01-19 11:00:00");
    confirmed(&w, "NS-PAID", 49_900, "2024-01-15 09:00:00");
    confirmed(&w, "NS-THU", 20_000, "2024-01-18 09:00:00");
    let d = dir();
    // Rows reaching Thursday the 18th: Monday + 3 business days.
    let mut thu = payment("NS-THU", 20_000);
    thu.txn = "2024-01-18 12:00:00";
    let first = path(&d, "to-thursday.csv");
    write_csv(&first, &[payment("NS-PAID", 49_900), thu]);
    import(&w, &[&first], 0);
    let rep = report(&w, &[]);
    assert_eq!(
        kinds(&rep),
        [("not_settled".to_string(), "NS-MON".to_string())],
        "{rep}"
    );
    let line = &rep["discrepancies"][0];
    assert_eq!(line["order"], "NS-MON");
    assert_eq!(line["amount"], 30_000);

    // A later report brings Monday's payout: cleared; it reaches Wednesday the 24th, so
    // Friday's order is now overdue.
    let mut mon = payment("NS-MON", 30_000);
    mon.txn = "2024-01-24 10:00:00";
    let second = path(&d, "to-wednesday.csv");
    write_csv(&second, &[mon]);
    import(&w, &[&second], 0);
    assert_eq!(
        kinds(&report(&w, &[])),
        [("not_settled".to_string(), "NS-FRI".to_string())]
    );
    assert!(mark(&w, "NS-MON").is_some());
    let range = report(&w, &["--to", "2024-01-18"]);
    assert!(
        kinds(&range).is_empty(),
        "Friday's confirmation is outside the range: {range}"
    );
}
