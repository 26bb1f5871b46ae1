function out = inflate_bytes(frames)
%INFLATE_BYTES Decompress zstd frames held in memory (a cell array of uint8 vectors; packed
%   objects): each is written to a temporary file and all are inflated by one batch of
%   zstd commands (scistack.internal.zstd_inflate). Returns a cell array of uint8 columns.
tmp = cell(size(frames));
for k = 1:numel(frames)
    tmp{k} = [tempname(), '.zst'];
end
cleaner = onCleanup(@() scistack.internal.remove_files(tmp));
for k = 1:numel(frames)
    scistack.internal.write_bytes(tmp{k}, frames{k});
end
out = scistack.internal.zstd_inflate(tmp);
clear cleaner
end
