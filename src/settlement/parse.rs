//! Reading a settlement report: CSV (the `csv` crate) or XLSX (`calamine`, the first sheet), into
//! [`Row`]s, all of the file or nothing.
//!
//! Both formats become lines of [`Cell`]s first, then one path reads them. The header is the
//! first line (of the first 50) whose cells name every required column; lines above it (the
//! XLSX download's title rows) are skipped. Header names are matched ignoring case, spaces and
//! punctuation (`Merchant Reference Id` = `MerchantReferenceId`), in any column order; unknown
//! columns are ignored, a known one named twice is an error. Amounts are rupees with at most two
//! decimals, read into exact integer paise: text digit by digit (never through a float), an XLSX
//! number (an f64) rounded to two decimals and refused unless it is within 1e-6 of a two-decimal
//! number. An empty `Fee` or tax cell is 0; an empty `Amount` is an error. Dates: see
//! [`super::dates`]. Every error names the file, the line (the CSV line, the XLSX row) and the
//! column (number and header name).

use std::fmt;
use std::path::Path;

use super::dates;
use super::{PaymentType, Row};

/// What is wrong with a report, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    /// 1-based line (CSV) or row (XLSX); 0 when the error is about the whole file.
    pub line: u64,
    /// 1-based column number and its header as written.
    pub column: Option<(usize, String)>,
    pub problem: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ": line {}", self.line)?;
        }
        if let Some((n, name)) = &self.column {
            write!(f, ", column {n} ({name})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ParseError {}

/// One cell, whatever the format.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Number(f64),
    /// An XLSX date cell: the instant (UTC ms), already read as India time.
    Instant(i64),
}

/// The columns of the report. `From` is recognised (so it is not mistaken for something else)
/// but never read: it is the payer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    PaymentType,
    MerchantReferenceId,
    PhonePeReferenceId,
    From,
    Instrument,
    CreationDate,
    Amount,
    Fee,
    TransactionDate,
    SettlementDate,
    BankReferenceNo,
    Igst,
    Cgst,
    Sgst,
}

const FIELDS: [(Field, &str, bool); 14] = [
    (Field::PaymentType, "PaymentType", true),
    (Field::MerchantReferenceId, "MerchantReferenceId", true),
    (Field::PhonePeReferenceId, "PhonePeReferenceId", true),
    (Field::From, "From", false),
    (Field::Instrument, "Instrument", false),
    (Field::CreationDate, "CreationDate", false),
    (Field::Amount, "Amount", true),
    (Field::Fee, "Fee", true),
    (Field::TransactionDate, "TransactionDate", true),
    (Field::SettlementDate, "SettlementDate", true),
    (Field::BankReferenceNo, "BankReferenceNo", true),
    (Field::Igst, "IGST", true),
    (Field::Cgst, "CGST", true),
    (Field::Sgst, "SGST", true),
];

/// Lines searched for the header.
const HEADER_SEARCH: usize = 50;
/// The largest amount accepted, in paise (₹1,000 crore): anything above is a misread column.
const MAX_PAISE: i64 = 10_000_000_000_000;

/// `Merchant Reference Id` → `merchantreferenceid`.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn field_of(name: &str) -> Option<Field> {
    let n = normalise(name);
    FIELDS
        .iter()
        .find(|(_, canonical, _)| normalise(canonical) == n)
        .map(|(f, _, _)| *f)
}

fn canonical(f: Field) -> &'static str {
    FIELDS.iter().find(|(g, _, _)| *g == f).map_or("?", |(_, n, _)| n)
}

/// Read one report: XLSX when the file is a zip (or named `.xlsx`), CSV otherwise.
pub fn read_file(path: &Path) -> Result<Vec<Row>, ParseError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ParseError {
        file: name.clone(),
        line: 0,
        column: None,
        problem: format!("cannot be read: {e}"),
    })?;
    let is_xlsx = bytes.starts_with(b"PK\x03\x04") || path.extension().is_some_and(|e| e.eq_ignore_ascii_case("xlsx"));
    if is_xlsx {
        parse_xlsx(&name, bytes)
    } else {
        parse_csv(&name, &bytes)
    }
}

/// A CSV report (UTF-8, an optional BOM, comma-separated, quoted as RFC 4180).
pub fn parse_csv(file: &str, bytes: &[u8]) -> Result<Vec<Row>, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            let problem = match e.kind() {
                csv::ErrorKind::Utf8 { .. } => "is not UTF-8 text".to_string(),
                _ => format!("is not valid CSV: {e}"),
            };
            ParseError {
                file: file.into(),
                line,
                column: None,
                problem,
            }
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let cells = record
            .iter()
            .map(|c| match c.trim() {
                "" => Cell::Empty,
                t => Cell::Text(t.to_string()),
            })
            .collect();
        lines.push((line, cells));
    }
    rows_of(file, lines, false)
}

/// An XLSX report: the first sheet.
pub fn parse_xlsx(file: &str, bytes: Vec<u8>) -> Result<Vec<Row>, ParseError> {
    use calamine::{Data, Reader, Xlsx};
    let whole = |problem: String| ParseError {
        file: file.into(),
        line: 0,
        column: None,
        problem,
    };
    let mut book: Xlsx<_> =
        Xlsx::new(std::io::Cursor::new(bytes)).map_err(|e| whole(format!("is not a readable XLSX workbook: {e}")))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| whole("has no sheet".into()))?
        .map_err(|e| whole(format!("its first sheet cannot be read: {e}")))?;
    let (first_row, first_col) = range.start().unwrap_or((0, 0));
    let mut lines = Vec::with_capacity(range.height());
    for (i, r) in range.rows().enumerate() {
        let line = u64::from(first_row) + i as u64 + 1;
        // Columns left of the range are empty: keep column numbers as the sheet's.
        let mut cells = vec![Cell::Empty; first_col as usize];
        for (j, c) in r.iter().enumerate() {
            let column = first_col as usize + j + 1;
            cells.push(match c {
                Data::Empty => Cell::Empty,
                Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => match s.trim() {
                    "" => Cell::Empty,
                    t => Cell::Text(t.to_string()),
                },
                Data::Float(f) => Cell::Number(*f),
                Data::Int(n) => Cell::Number(*n as f64),
                Data::Bool(b) => Cell::Text(b.to_string()),
                Data::DateTime(dt) => Cell::Instant(excel_instant(dt).ok_or_else(|| ParseError {
                    file: file.into(),
                    line,
                    column: Some((column, format!("column {column}"))),
                    problem: "holds a date outside the years 1900 to 2999".into(),
                })?),
                Data::Error(e) => Cell::Text(format!("#ERROR {e}")),
            });
        }
        lines.push((line, cells));
    }
    rows_of(file, lines, true)
}

/// An Excel date cell as an instant: its calendar date and time of day, as India time.
fn excel_instant(dt: &calamine::ExcelDateTime) -> Option<i64> {
    let (y, m, d, hh, mm, ss, ms) = dt.to_ymd_hms_milli();
    let (y, m, d) = (i64::from(y), u32::from(m), u32::from(d));
    if !(1900..=2999).contains(&y) || dt.is_duration() {
        return None;
    }
    let secs = (i64::from(hh) * 60 + i64::from(mm)) * 60 + i64::from(ss);
    // To the nearest second: a serial's float rounding shows up as ...:59.999.
    let day_ms = (secs * 1000 + i64::from(ms) + 500) / 1000 * 1000;
    Some(dates::days_from_civil(y, m, d) * 86_400_000 + day_ms - dates::IST_OFFSET_MS)
}

/// Where each known column is: its index in the line and its header as written.
struct Header {
    columns: Vec<(Field, usize, String)>,
}

impl Header {
    fn at(&self, f: Field) -> Option<(usize, &str)> {
        self.columns
            .iter()
            .find(|(g, _, _)| *g == f)
            .map(|(_, i, n)| (*i, n.as_str()))
    }
}

fn text_of(c: &Cell) -> Option<&str> {
    match c {
        Cell::Text(t) => Some(t),
        _ => None,
    }
}

/// The header, if `cells` is one: every required column named once. `Err` when the line names
/// several known columns (it is meant as the header) but misses or repeats some.
fn header(cells: &[Cell]) -> Result<Option<Header>, String> {
    let mut columns: Vec<(Field, usize, String)> = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        let Some(name) = text_of(c) else { continue };
        let Some(f) = field_of(name) else { continue };
        if columns.iter().any(|(g, _, _)| *g == f) {
            return Err(format!("the header names {} twice", canonical(f)));
        }
        columns.push((f, i, name.to_string()));
    }
    let missing: Vec<&str> = FIELDS
        .iter()
        .filter(|(f, _, required)| *required && !columns.iter().any(|(g, _, _)| g == f))
        .map(|(_, n, _)| *n)
        .collect();
    match (missing.is_empty(), columns.len()) {
        (true, _) => Ok(Some(Header { columns })),
        (false, n) if n >= 3 => Err(format!("the header lacks the column(s) {}", missing.join(", "))),
        _ => Ok(None),
    }
}

/// Turn the lines of a report into rows: find the header, then read every line below it.
fn rows_of(file: &str, lines: Vec<(u64, Vec<Cell>)>, xlsx: bool) -> Result<Vec<Row>, ParseError> {
    let err = |line: u64, column: Option<(usize, String)>, problem: String| ParseError {
        file: file.into(),
        line,
        column,
        problem,
    };
    let mut found = None;
    for (idx, (line, cells)) in lines.iter().enumerate().take(HEADER_SEARCH) {
        if let Some(h) = header(cells).map_err(|p| err(*line, None, p))? {
            found = Some((idx, h));
            break;
        }
    }
    let Some((idx, h)) = found else {
        let names: Vec<&str> = FIELDS.iter().filter(|f| f.2).map(|f| f.1).collect();
        return Err(err(
            0,
            None,
            format!(
                "has no header line naming the columns {} (in its first {HEADER_SEARCH} lines)",
                names.join(", ")
            ),
        ));
    };
    let reader = LineReader { file, header: &h, xlsx };
    let mut rows = Vec::with_capacity(lines.len().saturating_sub(idx + 1));
    for (line, cells) in lines.into_iter().skip(idx + 1) {
        if cells.iter().all(|c| *c == Cell::Empty) {
            continue;
        }
        rows.push(reader.row(line, &cells)?);
    }
    if rows.is_empty() {
        return Err(err(0, None, "has a header but no rows".into()));
    }
    Ok(rows)
}

struct LineReader<'a> {
    file: &'a str,
    header: &'a Header,
    xlsx: bool,
}

impl LineReader<'_> {
    fn row(&self, line: u64, cells: &[Cell]) -> Result<Row, ParseError> {
        // An optional column the header lacks reads as empty.
        let get = |f: Field| -> (Option<&Cell>, Cell0) {
            let (i, name) = self.header.at(f).unwrap_or((usize::MAX, canonical(f)));
            let cell = cells.get(i).filter(|c| **c != Cell::Empty);
            let column = (i.saturating_add(1), name.to_string());
            (cell, Cell0 { line, column })
        };
        let e = |at: Cell0, problem: String| ParseError {
            file: self.file.into(),
            line: at.line,
            column: Some(at.column),
            problem,
        };
        let text = |f: Field, required: bool| -> Result<Option<String>, ParseError> {
            let (cell, at) = get(f);
            match cell {
                None if required => Err(e(at, "is empty".into())),
                None => Ok(None),
                Some(Cell::Text(t)) => Ok(Some(t.clone())),
                // An id stored as a number in XLSX (a UTR often is): its digits.
                Some(Cell::Number(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => Ok(Some(format!("{}", *n as i64))),
                Some(_) => Err(e(at, "is not text".into())),
            }
        };
        let money = |f: Field, required: bool| -> Result<i64, ParseError> {
            let (cell, at) = get(f);
            match cell {
                None if required => Err(e(at, "is empty; an amount in rupees is required".into())),
                None => Ok(0),
                Some(Cell::Text(t)) => rupees_text(t).map_err(|p| e(at, format!("`{t}` {p}"))),
                Some(Cell::Number(n)) => rupees_number(*n).map_err(|p| e(at, p)),
                Some(Cell::Instant(_)) => Err(e(at, "is a date, not an amount".into())),
                Some(Cell::Empty) => Ok(0),
            }
        };
        let date = |f: Field, required: bool| -> Result<Option<i64>, ParseError> {
            let (cell, at) = get(f);
            match cell {
                None if required => Err(e(at, "is empty; a date is required".into())),
                None | Some(Cell::Empty) => Ok(None),
                Some(Cell::Instant(ms)) => Ok(Some(*ms)),
                Some(Cell::Text(t)) => dates::parse_text(t).map(Some).ok_or_else(|| {
                    e(
                        at,
                        format!("`{t}` is not a date (yyyy-MM-dd[THH:mm:ss], dd-MM-yyyy[ HH:mm:ss])"),
                    )
                }),
                // A date written as a plain number in XLSX: an Excel serial date.
                Some(Cell::Number(n)) if self.xlsx => dates::from_excel_serial(*n, false)
                    .map(Some)
                    .ok_or_else(|| e(at, format!("{n} is not an Excel date"))),
                Some(Cell::Number(n)) => Err(e(at, format!("{n} is not a date"))),
            }
        };
        let type_text = text(Field::PaymentType, true)?.unwrap_or_default();
        let payment_type = PaymentType::parse(&type_text).ok_or_else(|| {
            let (_, at) = get(Field::PaymentType);
            e(at, format!("`{type_text}` is not PAYMENT or REFUND"))
        })?;
        Ok(Row {
            payment_type,
            merchant_reference_id: text(Field::MerchantReferenceId, true)?.unwrap_or_default(),
            phonepe_reference_id: text(Field::PhonePeReferenceId, true)?.unwrap_or_default(),
            instrument: text(Field::Instrument, false)?,
            creation_date: date(Field::CreationDate, false)?,
            transaction_date: date(Field::TransactionDate, true)?.unwrap_or_default(),
            settlement_date: date(Field::SettlementDate, true)?.unwrap_or_default(),
            amount: money(Field::Amount, true)?,
            fee: money(Field::Fee, false)?,
            igst: money(Field::Igst, false)?,
            cgst: money(Field::Cgst, false)?,
            sgst: money(Field::Sgst, false)?,
            utr: text(Field::BankReferenceNo, false)?,
            file: self.file.to_string(),
            line,
        })
    }
}

/// Where a cell is, for its error.
struct Cell0 {
    line: u64,
    column: (usize, String),
}

/// Rupees written as text → paise, digit by digit: `1234.5`, `-12.34`, `1,23,456.00` (Indian
/// or Western grouping of thousands). The error follows the quoted value.
pub fn rupees_text(t: &str) -> Result<i64, String> {
    let s = t.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if s.ends_with('.') {
        return Err("has a decimal point and no decimals".into());
    }
    if frac.len() > 2 {
        return Err("has more than two decimals".into());
    }
    let grouped = whole.contains(',');
    let whole_digits: String = whole.chars().filter(|c| *c != ',').collect();
    let ok_groups = !grouped || {
        // The last group has 3 digits; groups before it 2 or 3; none empty.
        let groups: Vec<&str> = whole.split(',').collect();
        let n = groups.len();
        groups
            .iter()
            .enumerate()
            .all(|(i, g)| !g.is_empty() && g.len() <= 3 && (i == 0 || g.len() >= 2) && (i + 1 < n || g.len() == 3))
    };
    let digits_only = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if whole_digits.is_empty() || !digits_only(&whole_digits) || !digits_only(frac) || !ok_groups {
        return Err("is not an amount in rupees (digits, at most two decimals)".into());
    }
    let rupees: i64 = whole_digits
        .parse()
        .ok()
        .filter(|r: &i64| *r <= MAX_PAISE / 100)
        .ok_or("is too large")?;
    let paise = rupees * 100 + format!("{frac:0<2}").parse::<i64>().unwrap_or(0);
    Ok(if negative { -paise } else { paise })
}

/// Rupees as an XLSX number (an f64) → paise: rounded to two decimals, refused unless the number
/// is within 1e-6 of that two-decimal value.
pub fn rupees_number(n: f64) -> Result<i64, String> {
    if !n.is_finite() {
        return Err("is not a finite number".into());
    }
    let paise = (n * 100.0).round();
    if paise.abs() > MAX_PAISE as f64 {
        return Err(format!("{n} is too large"));
    }
    if (n - paise / 100.0).abs() > 1e-6 {
        return Err(format!("{n} has more than two decimals"));
    }
    Ok(paise as i64)
}

#[cfg(test)]
mod tests;
