-- Cross-references, caption numbers, callouts and table layout for hmlib reports rendered with
-- plain pandoc (pandoc-crossref is not available, Quarto may not be installed).
--
-- * `@fig-x`, `@tbl-x`, `@sec-x` (Quarto syntax, parsed by pandoc as citations) become links:
--   HTML: "Figure 3" linking to #fig-x, numbered in document order as the captions are;
--   Typst: native references (`@fig-x`), which Typst numbers and links itself.
--   An id that names no figure, table or section is left as visible "??x" and reported on stderr,
--   so a broken reference is never silent.
-- * HTML only: captions get their number ("Figure 3.", "Table 2."), as Typst numbers its own.
-- * Typst only: callout divs become shaded blocks; wide tables get column widths that fit their
--   longest words (7 pt at the smallest, a landscape page if need be); table text is never hyphenated.
-- Run this filter before --citeproc so that citeproc sees only bibliography citations.

local is_html = FORMAT:match("html") ~= nil
local is_typst = FORMAT:match("typst") ~= nil

local fig_num, tbl_num, sec_num, sec_title = {}, {}, {}, {}
local missing = {}

local function is_xref(id)
  return id:match("^fig%-") or id:match("^tbl%-") or id:match("^sec%-")
end

local function has_class(el, cls)
  for _, c in ipairs(el.classes or {}) do
    if c == cls then return true end
  end
  return false
end

-- pass 1: number figures and tables (document order) and sections (pandoc's numbering scheme)
local function collect(doc)
  local nf, nt = 0, 0
  local counters = {0, 0, 0, 0, 0, 0}
  doc:walk({
    traverse = "topdown",
    Figure = function(f)
      nf = nf + 1
      if f.identifier ~= "" then fig_num[f.identifier] = nf end
      -- a figure's image may carry the id instead (implicit figures)
      f:walk({ Image = function(im) if im.identifier ~= "" then fig_num[im.identifier] = nf end end })
    end,
    Table = function(t)
      local cap = t.caption and t.caption.long
      if cap and #cap > 0 then
        nt = nt + 1
        if t.identifier ~= "" then tbl_num[t.identifier] = nt end
      end
    end,
    Header = function(h)
      if has_class(h, "unnumbered") then
        if h.identifier ~= "" then sec_title[h.identifier] = pandoc.utils.stringify(h.content) end
        return
      end
      counters[h.level] = counters[h.level] + 1
      for i = h.level + 1, #counters do counters[i] = 0 end
      local parts = {}
      for i = 1, h.level do table.insert(parts, tostring(counters[i])) end
      if h.identifier ~= "" then
        sec_num[h.identifier] = table.concat(parts, ".")
        sec_title[h.identifier] = pandoc.utils.stringify(h.content)
      end
    end,
  })
end

local function label_for(id)
  if id:match("^fig%-") and fig_num[id] then return "Figure\u{a0}" .. fig_num[id] end
  if id:match("^tbl%-") and tbl_num[id] then return "Table\u{a0}" .. tbl_num[id] end
  if id:match("^sec%-") then
    if sec_num[id] then return "Section\u{a0}" .. sec_num[id] end
    if sec_title[id] then return sec_title[id] end
  end
  return nil
end

local function resolve_cite(c)
  for _, cit in ipairs(c.citations) do
    if not is_xref(cit.id) then return nil end
  end
  local out = {}
  for i, cit in ipairs(c.citations) do
    if i > 1 then
      table.insert(out, pandoc.Str(i == #c.citations and " and" or ","))
      table.insert(out, pandoc.Space())
    end
    local lab = label_for(cit.id)
    if lab == nil then
      missing[cit.id] = true
      table.insert(out, pandoc.Strong({ pandoc.Str("??" .. cit.id) }))
    elseif is_typst and not (cit.id:match("^sec%-") and not sec_num[cit.id]) then
      table.insert(out, pandoc.RawInline("typst", "@" .. cit.id))
    else
      table.insert(out, pandoc.Link({ pandoc.Str(lab) }, "#" .. cit.id, "", { class = "xref" }))
    end
  end
  -- a bracketed reference "[@fig-x]" reads as "(Figure 3)"
  if c.citations[1].mode == "NormalCitation" then
    table.insert(out, 1, pandoc.Str("("))
    table.insert(out, pandoc.Str(")"))
  end
  return out
end

local function prefix_caption(caption, label)
  local first = pandoc.Strong({ pandoc.Str(label) })
  if caption.long and #caption.long > 0 and caption.long[1].content then
    local blk = caption.long[1]
    table.insert(blk.content, 1, pandoc.Space())
    table.insert(blk.content, 1, first)
  else
    caption.long = { pandoc.Plain({ first }) }
  end
  return caption
end

local callout_colors = {
  note = { "#eef4fb", "#1f4e79" }, warning = { "#fff8e1", "#b58500" },
  important = { "#fdecea", "#a4262c" }, tip = { "#eaf6ec", "#2e7d32" }, caution = { "#fff3e0", "#c15c00" },
}

local function callout_kind(div)
  for _, c in ipairs(div.classes) do
    local k = c:match("^callout%-(%a+)$")
    if k then return k end
  end
  return nil
end

-- Typst table layout. Text in tables is never hyphenated and never smaller than 7 pt, so a
-- table fits only if each column is at least as wide as its longest word. The filter estimates
-- that minimum per column (characters x an average glyph width for the font size, plus the cell
-- inset), then: a table whose longest cells all fit keeps automatic widths; otherwise columns
-- get explicit widths, each its minimum plus a share of the remaining width in proportion to
-- its longer cells; the font goes from 7.5 pt to 7 pt, and a table that still does not fit the
-- portrait text width (A4, 2 cm margins: 482 pt) is set on a landscape page (728 pt).
local TEXT_WIDTH_PT = { portrait = 482, landscape = 728 }
local GLYPH_EM = 0.5     -- average advance of a character in ems (Libertinus Serif: digits 0.5, lower case ~0.45)
local INSET_PT = 8       -- left + right cell inset (hmlib.typst: inset x 4pt)

local function cell_text(cell)
  return pandoc.utils.stringify(cell.contents or cell)
end

-- Units and other short slash compounds ("mg/kg", "ug/L", "kg/ha") must not wrap after the slash
-- (Typst may break a line there: "mg/ kg"). In Typst output such a word is set in an unbreakable box,
-- and it counts as wider when the column minimum is estimated (slash compounds are mostly wide letters).
local NOBREAK_MAX_CHARS = 16
local NOBREAK_WIDTH = 1.25

local function nobreak_word(s)
  return s:find("/", 1, true) ~= nil and (utf8.len(s) or #s) <= NOBREAK_MAX_CHARS and not s:find("//", 1, true)
end

local function typst_escape(s)
  return (s:gsub("([\\#%[%]%*_%$@<>~`=%-+])", "\\%1"))
end

local function box_units(t)
  local filter = {
    Str = function(el)
      if nobreak_word(el.text) then
        return pandoc.RawInline("typst", "#box[" .. typst_escape(el.text) .. "]")
      end
    end,
  }
  local function rows(list)
    for _, row in ipairs(list) do
      for k, cell in ipairs(row.cells) do
        cell.contents = cell.contents:walk(filter)
        row.cells[k] = cell
      end
    end
  end
  rows(t.head.rows)
  for _, body in ipairs(t.bodies) do rows(body.body) end
  return t
end

local function column_stats(t)
  local n = #t.colspecs
  local word, full = {}, {}
  for j = 1, n do word[j], full[j] = 1, 1 end
  local function visit_row(row)
    local j = 1
    for _, cell in ipairs(row.cells) do
      local s = cell_text(cell)
      if j <= n then
        full[j] = math.max(full[j], utf8.len(s) or #s)
        for w in s:gmatch("%S+") do
          local len = utf8.len(w) or #w
          if nobreak_word(w) then len = math.ceil(len * NOBREAK_WIDTH) end
          word[j] = math.max(word[j], len)
        end
      end
      j = j + (cell.col_span or 1)
    end
  end
  for _, row in ipairs(t.head.rows) do visit_row(row) end
  for _, body in ipairs(t.bodies) do
    for _, row in ipairs(body.body) do visit_row(row) end
  end
  return word, full
end

local function pt(chars, size)
  return chars * GLYPH_EM * size + INSET_PT
end

-- returns font size, orientation and column fractions (nil: automatic widths)
local function table_layout(t)
  local word, full = column_stats(t)
  local function need(widths, size)
    local s = 0
    for _, c in ipairs(widths) do s = s + pt(c, size) end
    return s
  end
  if need(full, 7.5) <= TEXT_WIDTH_PT.portrait then return 7.5, "portrait", nil end
  local size, orient
  for _, o in ipairs({ "portrait", "landscape" }) do
    for _, sz in ipairs({ 7.5, 7 }) do
      if not size and need(word, sz) <= TEXT_WIDTH_PT[o] then size, orient = sz, o end
    end
  end
  size, orient = size or 7, orient or "landscape"
  local avail = TEXT_WIDTH_PT[orient]
  local mins, extra, total_extra = {}, {}, 0
  for j = 1, #word do
    mins[j] = pt(word[j], size)
    extra[j] = math.max(pt(math.min(full[j], 60), size) - mins[j], 0)
    total_extra = total_extra + extra[j]
  end
  local spare = math.max(avail - need(word, size), 0)
  local fr = {}
  for j = 1, #word do
    local w = mins[j] + (total_extra > 0 and spare * extra[j] / total_extra or 0)
    fr[j] = math.min(w, mins[j] + extra[j]) / avail
  end
  local sum = 0
  for j = 1, #fr do sum = sum + fr[j] end
  if sum > 1 then for j = 1, #fr do fr[j] = fr[j] / sum end end  -- too wide even so: share the page
  return size, orient, fr
end

local top_tables = {}

function Pandoc(doc)
  collect(doc)
  for _, b in ipairs(doc.blocks) do
    if b.t == "Table" and b.identifier ~= "" then top_tables[b.identifier] = true end
  end
  local nf, nt = 0, 0
  doc = doc:walk({
    Cite = function(c) return resolve_cite(c) end,
  })
  doc = doc:walk({
    traverse = "topdown",
    Figure = function(f)
      if is_html then
        nf = nf + 1
        f.caption = prefix_caption(f.caption, "Figure " .. nf .. ".")
        return f
      end
    end,
    Table = function(t)
      local cap = t.caption and t.caption.long
      if not (cap and #cap > 0) then return nil end
      if is_html then
        nt = nt + 1
        t.caption = prefix_caption(t.caption, "Table " .. nt .. ".")
        return t
      end
      if is_typst then
        local size, orient, fr = table_layout(t)  -- measured on the plain text, before the boxes
        t = box_units(t)
        if fr then
          for j, spec in ipairs(t.colspecs) do t.colspecs[j] = { spec[1], fr[j] } end
        end
        if orient == "landscape" and not top_tables[t.identifier] then orient = "portrait" end  -- no page in a box
        if size ~= 7.5 or orient ~= "portrait" then
          -- a show-set rule, as hmlib.typst sets the table font with one (a plain set would lose to it)
          local set = "#show figure.where(kind: table): set text(size: " .. size .. "pt)"
          local open = (orient == "landscape" and "#page(flipped: true)[" or "#[") .. set
          return { pandoc.RawBlock("typst", open), t, pandoc.RawBlock("typst", "]") }
        end
        return t
      end
    end,
    Div = function(div)
      -- tabs exist in the HTML only; in print a tab set is its figures in order, with no box around them
      -- (a box would keep its figures from floating to the top or bottom of a page)
      if is_typst and (has_class(div, "hm-tabs") or has_class(div, "hm-tab")) then
        -- unwrap the tab divs inside too: topdown traversal does not descend into a returned list, and a
        -- tab left as a Div becomes a Typst block that keeps its figure from floating
        local flat = {}
        for _, b in ipairs(div.content) do
          if b.t == "Div" and has_class(b, "hm-tab") then
            for _, c in ipairs(b.content) do table.insert(flat, c) end
          else
            table.insert(flat, b)
          end
        end
        return flat
      end
      if is_typst and has_class(div, "table-note") then
        local blocks = { pandoc.RawBlock("typst", "#block(above: 0.3em, below: 1.1em)[#set text(size: 7.5pt, fill: luma(80))") }
        for _, b in ipairs(div.content) do table.insert(blocks, b) end
        table.insert(blocks, pandoc.RawBlock("typst", "]"))
        return blocks
      end
      local kind = callout_kind(div)
      if kind and is_typst then
        local col = callout_colors[kind] or callout_colors.note
        local blocks = { pandoc.RawBlock("typst", string.format(
          '#block(width: 100%%, fill: rgb("%s"), stroke: (left: 2.5pt + rgb("%s")), inset: (x: 9pt, y: 7pt), radius: 2pt, breakable: true)[',
          col[1], col[2])) }
        local title = div.attributes["title"]
        if title and title ~= "" then
          table.insert(blocks, pandoc.Para({ pandoc.Strong({ pandoc.Str(title) }) }))
        end
        for _, b in ipairs(div.content) do table.insert(blocks, b) end
        table.insert(blocks, pandoc.RawBlock("typst", "]"))
        return blocks
      end
    end,
  })
  local ids = {}
  for id, _ in pairs(missing) do table.insert(ids, id) end
  if #ids > 0 then
    table.sort(ids)
    io.stderr:write("hmlib-crossref: unresolved cross-references: " .. table.concat(ids, ", ") .. "\n")
  end
  return doc
end
