//! The HTML timeline page (`analyze -f html` to standard output, `--html FILE` beside any
//! other format).
//!
//! Contract: the page is written at [`Sink::finish`]; a file is created only then (a run that
//! fails leaves none), and its errors name it.

use crate::session::Event;
use crate::session::record::SessionRecord;
use crate::sink::html::HtmlReport;
use crate::sink::report::Totals;
use crate::sink::{Sink, Wants};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

/// Where the page goes.
pub enum PageTo<'w> {
    Writer(Box<dyn Write + 'w>),
    /// Created when the page is written.
    File(PathBuf),
}

/// The page's sink.
pub struct HtmlPage<'w> {
    report: Option<HtmlReport>,
    to: Option<PageTo<'w>>,
}

impl<'w> HtmlPage<'w> {
    /// A page drawing the `top` most severe sessions as lanes (0: all).
    pub fn new(to: PageTo<'w>, top: usize) -> Self {
        HtmlPage { report: Some(HtmlReport::new(top)), to: Some(to) }
    }
}

impl Sink for HtmlPage<'_> {
    fn on_event(&mut self, event: &Event) -> io::Result<()> {
        self.report.as_mut().map_or(Ok(()), |r| r.on_event(event))
    }

    fn on_record(&mut self, record: &SessionRecord) -> io::Result<()> {
        if let Some(r) = &mut self.report {
            r.record(record.clone());
        }
        Ok(())
    }

    fn finish(&mut self, totals: &Totals) -> io::Result<()> {
        let (Some(report), Some(to)) = (self.report.take(), self.to.take()) else { return Ok(()) };
        match to {
            PageTo::Writer(w) => report.write(totals, w)?.flush(),
            PageTo::File(path) => {
                let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
                let file = std::fs::File::create(&path).map_err(named)?;
                report.write(totals, BufWriter::new(file)).and_then(|mut w| w.flush()).map_err(named)
            }
        }
    }

    fn wants(&self) -> Wants {
        Wants { records: true, activity: true } // each client packet, for the silences
    }
}
