function bytes = zstd_inflate(path)
%ZSTD_INFLATE The decompressed content (uint8 column) of the zstd file PATH, through the
%   zstd command-line tool (set SCISTACK_ZSTD to its path if it is not on the PATH).
exe = getenv('SCISTACK_ZSTD');
if isempty(exe)
    exe = 'zstd';
end
tmp = [tempname(), '.bin'];
cleaner = onCleanup(@() remove_file(tmp));
q = @scistack.internal.shell_quote;
cmd = sprintf('%s -d -q -c -- %s > %s', q(exe), q(path), q(tmp));
[status, out] = system(cmd);
if status ~= 0
    if status == 127 || ~isempty(regexpi(out, 'not (found|recognized)', 'once'))
        error('scistack:zstdMissing', ['%s is zstd-compressed and the zstd command-line ', ...
            'tool was not found: install zstd (apt install zstd, brew install zstd, or ', ...
            'https://github.com/facebook/zstd/releases) or set SCISTACK_ZSTD to its path'], path);
    end
    error('scistack:corruptObject', 'zstd could not decompress %s (exit %d): %s', ...
        path, status, strtrim(out));
end
bytes = scistack.internal.read_bytes(tmp);
end

function remove_file(p)
if exist(p, 'file')
    delete(p);
end
end
