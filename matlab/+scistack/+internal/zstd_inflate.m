function bytes = zstd_inflate(path)
%ZSTD_INFLATE The decompressed content (uint8 column) of the zstd file PATH, through the
%   zstd command-line tool (set SCISTACK_ZSTD to its path if it is not on the PATH).
%   PATH may be a cell array of paths: they are inflated by one system() call (in batches
%   of 100) and BYTES is a cell array.
many = iscell(path);
if ~many
    path = {path};
end
exe = getenv('SCISTACK_ZSTD');
if isempty(exe)
    exe = 'zstd';
end
q = @scistack.internal.shell_quote;
out = cell(size(path));
for first = 1:100:numel(path)
    batch = first:min(first + 99, numel(path));
    tmp = cell(size(batch));
    parts = cell(size(batch));
    for j = 1:numel(batch)
        tmp{j} = [tempname(), '.bin'];
        parts{j} = sprintf('%s -d -q -c -- %s > %s', q(exe), q(path{batch(j)}), q(tmp{j}));
    end
    cleaner = onCleanup(@() scistack.internal.remove_files(tmp));
    [status, msg] = system(strjoin(parts, ' && '));
    if status ~= 0
        if status == 127 || ~isempty(regexpi(msg, 'not (found|recognized)', 'once'))
            error('scistack:zstdMissing', ['%s is zstd-compressed and the zstd ', ...
                'command-line tool was not found: install zstd (apt install zstd, brew ', ...
                'install zstd, or https://github.com/facebook/zstd/releases) or set ', ...
                'SCISTACK_ZSTD to its path'], path{batch(1)});
        end
        error('scistack:corruptObject', 'zstd could not decompress %s (exit %d): %s', ...
            strjoin(path(batch), ', '), status, strtrim(msg));
    end
    for j = 1:numel(batch)
        out{batch(j)} = scistack.internal.read_bytes(tmp{j});
    end
    clear cleaner
end
if many
    bytes = out;
else
    bytes = out{1};
end
end
