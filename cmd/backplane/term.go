package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// screen redraws a block of lines in place on a terminal; elsewhere it
// prints each block as plain lines.
type screen struct {
	w     io.Writer
	tty   bool
	drawn int
}

func (s *screen) draw(lines []string) {
	var b strings.Builder
	if s.tty && s.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", s.drawn)
	}
	for _, l := range lines {
		if s.tty {
			b.WriteString("\x1b[2K")
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if s.tty {
		s.drawn = len(lines)
	}
	_, _ = io.WriteString(s.w, b.String())
}

// progress draws a progress bar on a terminal; elsewhere it stays quiet
// except for the label when a phase starts.
type progress struct {
	w     io.Writer
	tty   bool
	label string
}

func (p *progress) start(label string) {
	p.label = label
	if !p.tty {
		fmt.Fprintf(p.w, "%s...\n", label)
	}
}

func (p *progress) update(done, total int) {
	if !p.tty || total <= 0 {
		return
	}
	const width = 30
	n := min(width, done*width/total)
	fmt.Fprintf(p.w, "\r\x1b[2K%-34s [%s%s] %3d%%", p.label, strings.Repeat("█", n), strings.Repeat("·", width-n), min(100, done*100/total))
}

func (p *progress) finish() {
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[2K")
	}
}
