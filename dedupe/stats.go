package dedupe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ReadStats sizes the history in dir without opening it for writing: no
// folder is made, no interrupted merge is finished, only run footers are
// read. sgload status calls it while flush may be at work; a run merged
// away meanwhile is skipped.
func ReadStats(dir string) (Stats, error) {
	var st Stats
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("list dedupe history %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), runSuffix) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return st, err
		}
		info, err := f.Stat()
		if err == nil {
			var r *run
			if r, err = readFooter(f, info.Size(), path, e.Name()); err == nil {
				st.Runs++
				st.Keys += r.n
				st.Bytes += info.Size()
			}
		}
		_ = f.Close()
		if err != nil {
			return st, err
		}
	}
	return st, nil
}
