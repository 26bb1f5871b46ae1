function w = shuffle_width(path)
%SHUFFLE_WIDTH The element width of a byte-shuffled chunk file (0 when it is not one): such a
%   file starts with a zstd skippable frame 50 2A 4D 18, size 4, 'SH', width, 0, then one zstd
%   frame of the header and the shuffled payload (docs/format.md 1). The zstd tool skips the
%   first frame; the caller unshuffles the payload. Reads 12 bytes only.
head = scistack.internal.first_bytes(path, 12);
w = 0;
if numel(head) == 12 && isequal(head(1:10), uint8([80, 42, 77, 24, 4, 0, 0, 0, 83, 72])) ...
        && any(head(11) == [2, 4, 8]) && head(12) == 0
    w = double(head(11));
end
end
