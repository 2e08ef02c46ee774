//! Blocks → `report.md` (PNG links) and the self-contained `report.html` (inline CSS and
//! SVG, no script), with the Markdown escaping undone and redone for HTML.

use super::*;

pub(crate) fn markdown(blocks: &[Block], charts: &[Chart], chart_dir: &str) -> String {
    let mut out = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(
                    out,
                    "{} {}\n",
                    "#".repeat(usize::from(*level)),
                    compare::escape_markdown(text)
                );
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "{text}\n");
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(out, "- {item}");
                }
                out.push('\n');
            }
            Block::Table(table) => {
                let _ = writeln!(out, "{}", table.trim_end());
                out.push('\n');
            }
            Block::Links(links) => {
                for (text, href) in links {
                    let _ = writeln!(out, "- [{}]({href})", compare::escape_markdown(text));
                }
                out.push('\n');
            }
            Block::Folded(summary, table) => {
                let _ = writeln!(
                    out,
                    "<details><summary>{}</summary>\n\n{}\n\n</details>\n",
                    escape_html(summary),
                    table.trim_end()
                );
            }
            Block::Chart(i) => {
                // No image link: pasted into a pull request it would be a broken image.
                let c = &charts[*i];
                let _ = writeln!(
                    out,
                    "*Chart: {} (report.html, {chart_dir}/{}.png).*\n",
                    compare::escape_markdown(&c.title),
                    c.name
                );
            }
        }
    }
    out
}

pub(crate) const STYLE: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;\
max-width:1320px;margin:2em auto;padding:0 1em;color:#1a1a1a;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0;font-size:0.85em;display:block;overflow-x:auto;max-width:100%}\
th,td{border:1px solid #ccc;padding:0.2em 0.5em;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f3f3f6}\
td:not(:last-child){white-space:nowrap}td:last-child{text-align:left;min-width:16em}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}\
figcaption{font-size:0.85em;color:#555}";

pub(crate) fn html(blocks: &[Block], charts: &[Chart]) -> String {
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let title = blocks
        .iter()
        .find_map(|b| match b {
            Block::Heading(1, t) => Some(t.as_str()),
            _ => None,
        })
        .unwrap_or("valkey-bench report");
    let _ = writeln!(out, "<title>{}</title>", escape_html(title));
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    for block in blocks {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", escape_html(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "<p>{}</p>", inline_html(text));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", inline_html(item));
                }
                out.push_str("</ul>\n");
            }
            Block::Table(table) => out.push_str(&table_html(table)),
            Block::Folded(summary, table) => {
                let _ = writeln!(
                    out,
                    "<details><summary>{}</summary>\n{}</details>",
                    escape_html(summary),
                    table_html(table)
                );
            }
            Block::Links(links) => {
                out.push_str("<ul>\n");
                for (text, href) in links {
                    let _ = writeln!(
                        out,
                        "<li><a href=\"{}\">{}</a></li>",
                        escape_html(href),
                        escape_html(text)
                    );
                }
                out.push_str("</ul>\n");
            }
            Block::Chart(i) => {
                let c = &charts[*i];
                let _ = writeln!(
                    out,
                    "<figure id=\"{}\">\n{}\n<figcaption>{} ({}.svg, {}.png)</figcaption>\n</figure>",
                    c.name,
                    strip_xml_declaration(&c.svg),
                    escape_html(&c.title),
                    c.name,
                    c.name
                );
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

pub(crate) fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text that may carry Markdown escapes, `**bold**` and `` `code` ``, as HTML.
pub(crate) fn inline_html(text: &str) -> String {
    let plain = unescape_markdown(text);
    let mut out = String::new();
    let mut bold = false;
    let mut code = false;
    let mut rest = plain.as_str();
    while let Some(c) = rest.chars().next() {
        if !code && rest.starts_with("**") {
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
            rest = &rest[2..];
            continue;
        }
        if c == '`' {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        } else {
            out.push_str(&escape_html(&c.to_string()));
        }
        rest = &rest[c.len_utf8()..];
    }
    if code {
        out.push_str("</code>");
    }
    if bold {
        out.push_str("</strong>");
    }
    out
}

/// Undoes [`compare::escape_markdown`]: backslash escapes and the three entities.
pub(crate) fn unescape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Splits a pipe-table row into cells, keeping `\|` inside a cell.
pub(crate) fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            cell.push('\\');
            cell.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '|' {
            out.push(cell.trim().to_string());
            cell.clear();
        } else {
            cell.push(c);
        }
    }
    out.push(cell.trim().to_string());
    out
}

/// A Markdown pipe table as an HTML table; lines that are not table rows become paragraphs.
pub(crate) fn table_html(table: &str) -> String {
    let mut out = String::new();
    let mut rows = table.lines().filter(|l| !l.trim().is_empty()).peekable();
    let mut in_table = false;
    while let Some(line) = rows.next() {
        if !line.trim_start().starts_with('|') {
            if in_table {
                out.push_str("</tbody></table>\n");
                in_table = false;
            }
            let _ = writeln!(out, "<p>{}</p>", inline_html(line));
            continue;
        }
        let is_separator = |l: &str| l.trim().chars().all(|c| matches!(c, '|' | '-' | ':' | ' '));
        if !in_table && rows.peek().is_some_and(|next| is_separator(next)) {
            out.push_str("<table><thead><tr>");
            for cell in cells(line) {
                let _ = write!(out, "<th>{}</th>", inline_html(&cell));
            }
            out.push_str("</tr></thead><tbody>\n");
            rows.next();
            in_table = true;
            continue;
        }
        out.push_str("<tr>");
        for cell in cells(line) {
            let _ = write!(out, "<td>{}</td>", inline_html(&cell));
        }
        out.push_str("</tr>\n");
    }
    if in_table {
        out.push_str("</tbody></table>\n");
    }
    out
}

/// The page with every inline SVG reduced to its chart name: its structure, for snapshots.
pub fn html_structure(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("</svg>")
            .map_or(rest.len(), |e| start + e + "</svg>".len());
        out.push_str("<svg>…</svg>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
