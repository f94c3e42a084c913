use super::*;

const HEADER: &str = "PaymentType,MerchantReferenceId,PhonePeReferenceId,From,Instrument,CreationDate,\
Amount,Fee,TransactionDate,SettlementDate,BankReferenceNo,IGST,CGST,SGST";

/// 2024-01-15 00:00 India time.
const JAN15_IST: i64 = 1_705_257_000_000;
const HOUR: i64 = 3_600_000;

fn csv(lines: &[&str]) -> Result<Vec<Row>, ParseError> {
    parse_csv("settle.csv", lines.join("\n").as_bytes())
}

fn err(r: Result<Vec<Row>, ParseError>) -> ParseError {
    r.expect_err("refused")
}

#[test]
fn reads_a_report_into_exact_paise_and_india_time() {
    let rows = csv(&[
        HEADER,
        "PAYMENT,MT1,T2401,Asha Rao,UPI,15-01-2024 10:00:00,499.00,-11.78,15-01-2024 10:00:05,16-01-2024,UTR1,-2.12,0,0",
        "REFUND,RF1-1,T2402,,UPI,,-100.5,0,2024-01-15T12:00:00,2024-01-16,UTR1,0,0,0",
    ])
    .unwrap();
    assert_eq!(rows.len(), 2);
    let p = &rows[0];
    assert_eq!(p.payment_type, PaymentType::Payment);
    assert_eq!(
        (p.merchant_reference_id.as_str(), p.phonepe_reference_id.as_str()),
        ("MT1", "T2401")
    );
    assert_eq!((p.amount, p.fee, p.igst, p.cgst, p.sgst), (49_900, -1178, -212, 0, 0));
    assert_eq!(p.creation_date, Some(JAN15_IST + 10 * HOUR));
    assert_eq!(p.transaction_date, JAN15_IST + 10 * HOUR + 5000);
    assert_eq!(p.settlement_date, JAN15_IST + 24 * HOUR);
    assert_eq!((p.utr.as_deref(), p.instrument.as_deref()), (Some("UTR1"), Some("UPI")));
    assert_eq!((p.file.as_str(), p.line), ("settle.csv", 2));
    let r = &rows[1];
    assert_eq!(
        (r.payment_type, r.amount, r.creation_date),
        (PaymentType::Refund, -10_050, None)
    );
    assert_eq!(r.line, 3);
}

#[test]
fn header_names_ignore_case_spaces_and_order_and_unknown_columns() {
    let rows = csv(&[
        "sgst, cgst ,igst,Bank Reference No.,settlement date,TRANSACTION DATE,fee,amount,Payment Type,\
         merchant reference id,PhonePe Reference Id,Notes",
        "0,0,-2.12,UTR9,2024-01-16,2024-01-15,-11.78,499,payment,MT9,T9,whatever",
    ])
    .unwrap();
    assert_eq!(rows[0].merchant_reference_id, "MT9");
    assert_eq!((rows[0].amount, rows[0].fee, rows[0].igst), (49_900, -1178, -212));
    assert_eq!((rows[0].instrument.clone(), rows[0].creation_date), (None, None));
}

#[test]
fn title_lines_above_the_header_are_skipped_and_blank_lines_ignored() {
    let rows = csv(&[
        "PhonePe settlement report",
        "Merchant: M1,,",
        "",
        HEADER,
        "PAYMENT,MT1,T1,,,,1.00,0,2024-01-15,2024-01-16,U,0,0,0",
        ",,,,,,,,,,,,,",
        "PAYMENT,MT2,T2,,,,2.00,0,2024-01-15,2024-01-16,U,0,0,0",
    ])
    .unwrap();
    assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![5, 7]);
}

#[test]
fn amounts_as_text_are_exact_and_strict() {
    let ok = [
        ("0", 0),
        ("499", 49_900),
        ("499.5", 49_950),
        ("-11.78", -1178),
        ("+1.01", 101),
        ("1,234.56", 123_456),
        ("1,23,456.00", 12_345_600),
        ("0.29", 29),
        ("1234567.89", 123_456_789),
    ];
    for (text, paise) in ok {
        assert_eq!(rupees_text(text), Ok(paise), "{text}");
    }
    for bad in [
        "", "-", "1.234", "1.", ".5x", "12a", "₹12", "1,2", "12,34", "1,,234", "1e3", "NaN", "--1",
    ] {
        assert!(rupees_text(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        rupees_text(".5"),
        Err("is not an amount in rupees (digits, at most two decimals)".into())
    );
}

#[test]
fn amounts_as_numbers_round_to_two_decimals_within_a_millionth() {
    assert_eq!(rupees_number(499.0), Ok(49_900));
    assert_eq!(rupees_number(0.29), Ok(29), "0.29 * 100 is 28.999999999999996");
    assert_eq!(rupees_number(-11.78), Ok(-1178));
    assert_eq!(rupees_number(1.01 + 5e-7), Ok(101), "within 1e-6 of 1.01");
    for bad in [1.01 + 2e-6, 1.234, 0.001, f64::NAN, f64::INFINITY, 1e20] {
        assert!(rupees_number(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn every_error_names_the_file_line_and_column() {
    let bad_amount = err(csv(&[
        HEADER,
        "PAYMENT,MT1,T1,,,,1.00,0,2024-01-15,2024-01-16,U,0,0,0",
        "PAYMENT,MT2,T2,,,,12.345,0,2024-01-15,2024-01-16,U,0,0,0",
    ]));
    assert_eq!(
        bad_amount.to_string(),
        "settle.csv: line 3, column 7 (Amount): `12.345` has more than two decimals"
    );
    let cases: Vec<(&str, u64, usize, &str)> = vec![
        (
            "CHARGEBACK,MT1,T1,,,,1.00,0,2024-01-15,2024-01-16,U,0,0,0",
            2,
            1,
            "PaymentType",
        ),
        (
            "PAYMENT,,T1,,,,1.00,0,2024-01-15,2024-01-16,U,0,0,0",
            2,
            2,
            "MerchantReferenceId",
        ),
        ("PAYMENT,MT1,T1,,,,,0,2024-01-15,2024-01-16,U,0,0,0", 2, 7, "Amount"),
        ("PAYMENT,MT1,T1,,,,1.00,x,2024-01-15,2024-01-16,U,0,0,0", 2, 8, "Fee"),
        (
            "PAYMENT,MT1,T1,,,,1.00,0,2024-13-15,2024-01-16,U,0,0,0",
            2,
            9,
            "TransactionDate",
        ),
        ("PAYMENT,MT1,T1,,,,1.00,0,2024-01-15,,U,0,0,0", 2, 10, "SettlementDate"),
        (
            "PAYMENT,MT1,T1,,,,1.00,0,2024-01-15,2024-01-16,U,0,0,1.001",
            2,
            14,
            "SGST",
        ),
        (
            "PAYMENT,MT1,T1,,,31-02-2024,1.00,0,2024-01-15,2024-01-16,U,0,0,0",
            2,
            6,
            "CreationDate",
        ),
    ];
    for (line, at, column, name) in cases {
        let e = err(csv(&[HEADER, line]));
        assert_eq!(
            (e.line, e.column.clone()),
            (at, Some((column, name.to_string()))),
            "{line}: {e}"
        );
        assert_eq!(e.file, "settle.csv");
    }
    let short = err(csv(&[HEADER, "PAYMENT,MT1,T1"]));
    assert_eq!(
        (short.line, short.column.map(|c| c.1)),
        (2, Some("TransactionDate".to_string()))
    );
}

#[test]
fn a_file_without_a_usable_header_is_refused_whole() {
    let none = err(csv(&["a,b,c", "1,2,3"]));
    assert_eq!(none.line, 0);
    assert!(
        none.to_string()
            .contains("has no header line naming the columns PaymentType"),
        "{none}"
    );
    let lacking = err(csv(&[
        "PaymentType,MerchantReferenceId,PhonePeReferenceId,Amount",
        "PAYMENT,MT1,T1,1",
    ]));
    assert_eq!(lacking.line, 1);
    assert!(
        lacking.problem.contains("lacks the column(s) Fee, TransactionDate"),
        "{lacking}"
    );
    let twice = err(csv(&[&format!("{HEADER},amount"), "x"]));
    assert_eq!(twice.problem, "the header names Amount twice");
    let empty = err(csv(&[HEADER]));
    assert_eq!(empty.problem, "has a header but no rows");
    let not_utf8 = err(parse_csv("x.csv", b"PaymentType\n\xff\xfe,1\n"));
    assert!(not_utf8.problem.contains("UTF-8"), "{not_utf8}");
    let bom = parse_csv(
        "bom.csv",
        format!("\u{feff}{HEADER}\nPAYMENT,MT1,T1,,,,1.00,0,2024-01-15,2024-01-16,U,0,0,0\n").as_bytes(),
    );
    assert_eq!(bom.expect("a BOM is skipped").len(), 1);
}

/// An XLSX like the dashboard's download: two title rows, the header on row 3, amounts as
/// numbers, dates as Excel date cells (and one as text), a UTR stored as a number.
fn xlsx(amount: f64) -> Vec<u8> {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let date = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    sheet.write_string(0, 0, "Settlement report").unwrap();
    sheet.write_string(1, 0, "Merchant M1").unwrap();
    for (i, h) in HEADER.split(',').enumerate() {
        sheet.write_string(2, i as u16, h).unwrap();
    }
    let when = |d: u8, h: u16| ExcelDateTime::from_ymd(2024, 1, d).unwrap().and_hms(h, 0, 0).unwrap();
    sheet.write_string(3, 0, "PAYMENT").unwrap();
    sheet.write_string(3, 1, "MT1").unwrap();
    sheet.write_string(3, 2, "T2401").unwrap();
    sheet.write_string(3, 3, "Asha Rao").unwrap();
    sheet.write_datetime_with_format(3, 5, when(15, 10), &date).unwrap();
    sheet.write_number(3, 6, amount).unwrap();
    sheet.write_number(3, 7, -11.78).unwrap();
    sheet.write_datetime_with_format(3, 8, when(15, 10), &date).unwrap();
    sheet.write_string(3, 9, "16-01-2024").unwrap();
    sheet.write_number(3, 10, 412_345_678_901.0).unwrap();
    sheet.write_number(3, 11, -2.12).unwrap();
    sheet.write_number(3, 12, 0.0).unwrap();
    sheet.write_number(3, 13, 0.0).unwrap();
    book.save_to_buffer().unwrap()
}

#[test]
fn xlsx_reads_the_first_sheet_below_its_title_rows() {
    let rows = parse_xlsx("settle.xlsx", xlsx(499.0)).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.line, r.amount, r.fee, r.igst), (4, 49_900, -1178, -212));
    assert_eq!(r.transaction_date, JAN15_IST + 10 * HOUR);
    assert_eq!(r.creation_date, Some(JAN15_IST + 10 * HOUR));
    assert_eq!(r.settlement_date, JAN15_IST + 24 * HOUR);
    assert_eq!(r.utr.as_deref(), Some("412345678901"));
    let same = csv(&[
        HEADER,
        "PAYMENT,MT1,T2401,,,2024-01-15T10:00:00,499,-11.78,15-01-2024 10:00:00,2024-01-16,412345678901,-2.12,0,0",
    ])
    .unwrap();
    assert!(same[0].same_values(r), "{:?}\n{r:?}", same[0]);

    let e = parse_xlsx("settle.xlsx", xlsx(499.001)).expect_err("three decimals");
    assert_eq!(
        e.to_string(),
        "settle.xlsx: line 4, column 7 (Amount): 499.001 has more than two decimals"
    );
    let junk = parse_xlsx("junk.xlsx", b"PK\x03\x04 not really".to_vec()).expect_err("junk");
    assert!(junk.problem.starts_with("is not a readable XLSX workbook"), "{junk}");
}
