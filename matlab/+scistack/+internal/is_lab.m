function yes = is_lab(root)
%IS_LAB Whether the project at ROOT is a lab project: its config.json names a shared journal
%   (PostgreSQL) and object store (S3), which MATLAB reads through a local mirror.
yes = false;
config = fullfile(root, '.scistack', 'config.json');
if exist(config, 'file')
    c = jsondecode(fileread(config));
    yes = isfield(c, 'shared') && ~isempty(c.shared);
end
end
