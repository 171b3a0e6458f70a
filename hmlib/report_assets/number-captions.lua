-- Number figure and table captions ("Figure 1.", "Table 1.") for pandoc's HTML output.
-- Quarto numbers captions itself and Typst numbers #figure, so hmlib applies this filter
-- only when it renders HTML through plain pandoc.
local nfig, ntab = 0, 0

local function prefix(caption, label)
  local first = pandoc.Strong({pandoc.Str(label)})
  if caption.long and #caption.long > 0 then
    local blk = caption.long[1]
    if blk.content then
      table.insert(blk.content, 1, pandoc.Space())
      table.insert(blk.content, 1, first)
    end
  else
    caption.long = { pandoc.Plain({ first }) }
  end
  return caption
end

function Figure(fig)
  nfig = nfig + 1
  fig.caption = prefix(fig.caption, "Figure " .. nfig .. ".")
  return fig
end

function Table(tbl)
  ntab = ntab + 1
  tbl.caption = prefix(tbl.caption, "Table " .. ntab .. ".")
  return tbl
end
