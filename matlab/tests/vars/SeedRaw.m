classdef SeedRaw < scidb.BaseVariable
end
