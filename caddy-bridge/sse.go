package wakedock

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// maxEventSize bounds one server-sent event (a snapshot of many services
// stays far below this).
const maxEventSize = 8 << 20

var errEventTooLarge = errors.New("server-sent event too large")

type sseEvent struct {
	name string
	data []byte
}

// sseReader parses a text/event-stream (only the fields the bridge needs:
// event and data; id and retry are ignored).
type sseReader struct {
	r *bufio.Reader
	// onLine is called for every line read, comments (keepalives) included.
	onLine func()
}

func newSSEReader(r io.Reader, onLine func()) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 32<<10), onLine: onLine}
}

func (s *sseReader) readLine(buf []byte) ([]byte, error) {
	buf = buf[:0]
	for {
		chunk, err := s.r.ReadSlice('\n')
		if len(buf)+len(chunk) > maxEventSize {
			return nil, errEventTooLarge
		}
		buf = append(buf, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		buf = bytes.TrimSuffix(buf[:len(buf)-1], []byte{'\r'})
		return buf, nil
	}
}

// next returns the next dispatched event (one with data).
func (s *sseReader) next() (sseEvent, error) {
	var (
		ev      sseEvent
		hasData bool
		line    []byte
		err     error
	)
	for {
		line, err = s.readLine(line)
		if err != nil {
			return sseEvent{}, err
		}
		if s.onLine != nil {
			s.onLine()
		}
		if len(line) == 0 {
			if hasData {
				return ev, nil
			}
			ev = sseEvent{}
			continue
		}
		if line[0] == ':' {
			continue // comment, e.g. ": keepalive"
		}
		field, value, _ := bytes.Cut(line, []byte{':'})
		value = bytes.TrimPrefix(value, []byte{' '})
		switch string(field) {
		case "event":
			ev.name = string(value)
		case "data":
			if len(ev.data)+len(value) > maxEventSize {
				return sseEvent{}, errEventTooLarge
			}
			if hasData {
				ev.data = append(ev.data, '\n')
			}
			ev.data = append(ev.data, value...)
			hasData = true
		}
	}
}
