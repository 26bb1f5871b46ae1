function tmp = zstd_to_file(path)
%ZSTD_TO_FILE Decompress the zstd file PATH into a new temporary file and return its name
%   (the caller deletes it). Errors as scistack.internal.zstd_inflate.
exe = getenv('SCISTACK_ZSTD');
if isempty(exe)
    exe = 'zstd';
end
q = @scistack.internal.shell_quote;
tmp = [tempname(), '.bin'];
[status, msg] = system(sprintf('%s -d -q -f -c -- %s > %s', q(exe), q(path), q(tmp)));
if status ~= 0
    if exist(tmp, 'file')
        delete(tmp);
    end
    if status == 127 || ~isempty(regexpi(msg, 'not (found|recognized)', 'once'))
        error('scistack:zstdMissing', ['%s is zstd-compressed and the zstd command-line ', ...
            'tool was not found: install zstd (apt install zstd, brew install zstd, or ', ...
            'https://github.com/facebook/zstd/releases) or set SCISTACK_ZSTD to its path'], ...
            path);
    end
    error('scistack:corruptObject', 'zstd could not decompress %s (exit %d): %s', path, ...
        status, strtrim(msg));
end
end
