function cp = utf8_decode(bytes)
%UTF8_DECODE Code points (double row) of UTF-8 bytes. Lenient: a stray continuation byte
%   or a truncated sequence decodes to what its bits say rather than erroring.
b = double(bytes(:)');
if isempty(b) || all(b < 128)
    cp = b;
    return
end
lead = find(b < 128 | b >= 192);
len = ones(1, numel(lead));
lb = b(lead);
len(lb >= 192) = 2;
len(lb >= 224) = 3;
len(lb >= 240) = 4;
cp = lb;
cp(len == 2) = mod(lb(len == 2), 32);
cp(len == 3) = mod(lb(len == 3), 16);
cp(len == 4) = mod(lb(len == 4), 8);
n = numel(b);
for k = 1:3
    sel = len > k;
    pos = lead(sel) + k;
    ok = pos <= n;
    sel(sel) = ok;
    pos = pos(ok);
    cp(sel) = cp(sel) * 64 + mod(b(pos), 64);
end
end
