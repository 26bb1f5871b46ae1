function remove_files(paths)
% REMOVE_FILES  Delete the temporary files in cell array PATHS that exist (cleanup helper).
for k = 1:numel(paths)
    if exist(paths{k}, 'file')
        delete(paths{k});
    end
end
end
